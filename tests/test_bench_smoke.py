"""The benchmark keeps working: tiny runs of every scenario (their timings are not checked)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.support.skips import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"}


def quick_bench(out: Path, *args: str) -> dict[str, dict]:
    """Run `python -m bench --quick ARGS`; the scenario entries of its JSON, by scenario."""
    if importlib.util.find_spec("aiohttp") is None:
        skip_or_fail("the benchmark's packages are not installed (bench/requirements.txt)")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {s["scenario"]: s for s in json.loads((out / "latest.json").read_text())["scenarios"]}


def test_quick_benchmark_runs_every_scenario_and_writes_json(tmp_path):
    runs = quick_bench(tmp_path, "--db", "sqlite", "--processes", "1")
    assert set(runs) == SCENARIOS
    assert {s["status"] for s in runs.values()} == {"ok"}, {k: s["error"] for k, s in runs.items()}
    assert [runs[name]["figures"]["missing"] for name in ("S3", "S5")] == [0, 0]
    assert [runs[name]["figures"]["lost"] for name in ("S6", "S7")] == [0, 0]


def test_quick_benchmark_runs_against_the_baseline_server(tmp_path):
    """The floor topology (bench/baseline_server.py) keeps speaking what the scenarios expect."""
    runs = quick_bench(tmp_path, "--db", "baseline", "--scenarios", "S1,S2,S3,S6")
    assert {s["topology"] for s in runs.values()} == {"baseline/1p"}
    assert {k: s["status"] for k, s in runs.items()} == dict.fromkeys(("S1", "S2", "S3", "S6"), "ok")
    assert runs["S3"]["figures"]["missing"] == 0
    assert runs["S6"]["figures"]["lost"] == 0


def test_the_floor_project_migrates_nothing_and_the_claim_cost_script_runs(tmp_path):
    """bench/floor.sh hands the peer comparison a project whose `flask db upgrade` must pass;
    bench/claim_cost.py is S5's reproduction (its timings are not checked)."""
    (tmp_path / "wsgi.py").write_text((ROOT / "bench" / "floor_wsgi.py").read_text())
    flask = Path(sys.executable).with_name("flask")
    upgrade = subprocess.run(
        [str(flask), "--app", "wsgi", "db", "upgrade"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    cost = subprocess.run(
        [sys.executable, "-m", "bench.claim_cost", f"sqlite:///{tmp_path / 'cost.db'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cost.returncode == 0, cost.stderr[-3000:]
    assert [line.split()[0] for line in cost.stdout.splitlines()[1:4]] == ["select", "update", "claim"]
