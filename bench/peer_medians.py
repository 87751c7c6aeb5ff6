"""Medians of same-run ratios from several `../shared/perf/compare.sh` runs.

    .venv/bin/python -m bench.peer_medians bench/results/peer/*-sqlite.json

Each run measured the Node peer and this service one after the other, under one load;
for each metric the ratio ours/peer is taken within each run, then the median of those
ratios across the runs (and the median of each side's own figure, for reading). Below 1 is
better, except for connects/s.
"""

import json
import statistics
import sys
from pathlib import Path

# (scenario, metric path inside the scenario, label)
METRICS = (
    ("s1", "connectsPerSec", "S1 connects/s (higher is better)"),
    ("s2", "bytesPerConn", "S2 bytes per idle socket"),
    ("s3", "lastReceivedMs", "S3 fan-out to 1,000, last receipt (ms)"),
    ("s4", "postMs", "S4 10,000 offline rows, POST answer (ms)"),
    ("s5", "drainMs", "S5 1,000 pending drained (ms)"),
    ("s6", "deliveryMs.p99", "S6 100 POST/s, delivery p99 (ms)"),
    ("s6", "serverCpuMsPerPost", "S6 server CPU per POST (ms)"),
    ("s6", "lost", "S6 lost"),
    ("s6", "failed", "S6 POSTs refused or failed"),
    ("s5", "setupFailures", "S5 POSTs refused or failed"),
    ("s6", "otherCpuPct", "S6 other programs' CPU (%, the machine is shared)"),
)


def figure(run: dict, target: str, scenario: str, path: str) -> float | None:
    value = run.get("targets", {}).get(target, {}).get("scenarios", {}).get(scenario)
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, int | float) else None


def table(runs: list[dict]) -> list[str]:
    lines = [
        "| metric | peer | ours | ours/peer (median of same-run ratios) | runs |",
        "|---|---|---|---|---|",
    ]
    for scenario, path, label in METRICS:
        pairs = [(figure(r, "peer", scenario, path), figure(r, "flask", scenario, path)) for r in runs]
        pairs = [(p, o) for p, o in pairs if p is not None and o is not None]
        if not pairs:
            continue
        ratios = [o / p for p, o in pairs if p]
        ratio = f"{statistics.median(ratios):.2f}" if ratios else "–"
        peer = statistics.median(p for p, _ in pairs)
        ours = statistics.median(o for _, o in pairs)
        lines.append(f"| {label} | {peer:g} | {ours:g} | {ratio} | {len(pairs)} |")
    return lines


def main(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    if not runs:
        raise SystemExit("give the JSON files of compare.sh runs")
    print(f"{len(runs)} run(s): {', '.join(r.get('runId', '?') for r in runs)}")
    print("\n".join(table(runs)))


if __name__ == "__main__":
    main(sys.argv[1:])
