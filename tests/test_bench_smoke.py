"""The benchmark keeps working: a tiny run of every scenario (its timings are not checked)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"S1", "S2", "S3", "S4", "S5", "S6"}


def test_quick_benchmark_runs_every_scenario_and_writes_json(tmp_path):
    if importlib.util.find_spec("aiohttp") is None:
        skip_or_fail("the benchmark's packages are not installed (bench/requirements.txt)")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--db", "sqlite", "--processes", "1"]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    runs = {s["scenario"]: s for s in report["scenarios"]}
    assert set(runs) == SCENARIOS
    assert {s["status"] for s in runs.values()} == {"ok"}, {k: s["error"] for k, s in runs.items()}
    assert [runs[name]["figures"]["missing"] for name in ("S3", "S5")] == [0, 0]
    assert runs["S6"]["figures"]["lost"] == 0


def test_quick_benchmark_runs_against_the_baseline_server(tmp_path):
    """The floor topology (bench/baseline_server.py) keeps speaking what the scenarios expect."""
    if importlib.util.find_spec("aiohttp") is None:
        skip_or_fail("the benchmark's packages are not installed (bench/requirements.txt)")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--db", "baseline", "--scenarios", "S1,S3,S6"]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = {s["scenario"]: s for s in json.loads((tmp_path / "latest.json").read_text())["scenarios"]}
    assert {s["topology"] for s in runs.values()} == {"baseline/1p"}
    assert {k: s["status"] for k, s in runs.items()} == {"S1": "ok", "S3": "ok", "S6": "ok"}
    assert runs["S3"]["figures"]["missing"] == 0
    assert runs["S6"]["figures"]["lost"] == 0
