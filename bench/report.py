"""Output of a run: the table on stdout, the JSON files, the latency plot."""

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psutil

from tests.support.server import REPO_ROOT

PACKAGES = (
    "Flask",
    "Flask-SocketIO",
    "python-socketio",
    "python-engineio",
    "eventlet",
    "SQLAlchemy",
    "psycopg2-binary",
    "redis",
    "aiohttp",
)
PLOTTED = ("S3", "S6")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info() -> dict:
    """The machine, the software and the command of this run."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "packages": versions,
    }


def say(line: str = "") -> None:
    """One progress or table line on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _summary(result: dict) -> str:
    """The headline of a scenario; for one that failed, its error, then what it measured."""
    headline = result.get("headline") or ""
    if result["status"] == "ok":
        return headline
    error = " ".join((result.get("error") or "").split())[:160]
    return f"{error} | {headline}" if headline else error


def table(results: list[dict]) -> list[str]:
    """The result table: one row per scenario and topology."""
    header = ("scen.", "topology", "status", "key figures", "server CPU s", "load CPU s", "problems")
    rows = []
    for r in results:
        resources = r.get("resources") or {}
        rows.append(
            (
                r["scenario"],
                r["topology"],
                r["status"],
                _summary(r),
                _cell(resources.get("server_cpu_s")),
                _cell(resources.get("load_cpu_s")),
                "; ".join(r.get("problems") or []) or "-",
            )
        )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return lines


def _ms(summary: dict | None, key: str) -> str:
    value = (summary or {}).get(key)
    return "-" if value is None else f"{value:,.1f}"


def steps_table(results: list[dict]) -> list[str]:
    """The steps of every stepped scenario (S7), one row each, under a line naming scenario and topology."""
    header = (
        "target/s",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "dup",
        "POST err",
        "lag p99 ms",
        "server CPU s",
        "load CPU s",
        "other CPU s",
        "verdict",
    )
    lines: list[str] = []
    for r in results:
        steps = (r.get("figures") or {}).get("steps")
        if not steps:
            continue
        rows = [
            (
                _cell(s["target_rate"]),
                _cell(s.get("achieved_rate")),
                _ms(s.get("delivery_ms"), "p50_ms"),
                _ms(s.get("delivery_ms"), "p99_ms"),
                _ms(s.get("delivery_ms"), "max_ms"),
                _cell(s.get("lost")),
                _cell(s.get("duplicates")),
                _cell(s.get("post_errors")),
                _ms(s.get("schedule_lag_ms"), "p99_ms"),
                _cell(s.get("server_cpu_s")),
                _cell(s.get("load_cpu_s")),
                _cell(s.get("other_cpu_s")),
                "good" if s.get("good") else "bad: " + "; ".join(s.get("why_bad") or []),
            )
            for s in steps
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines.append(f"{r['scenario']} {r['title']} on {r['topology']}, step by step:")
        for row in [header, *rows]:  # figures right-aligned, the verdict (last) left-aligned
            cells = [v.rjust(w) for v, w in zip(row[:-1], widths, strict=False)] + [row[-1]]
            lines.append("  ".join(cells).rstrip())
        lines.append("")
    return lines


def write_json(document: dict, out_dir: Path, stamp: str) -> Path:
    """`<stamp>.json` and `latest.json` in `out_dir`; returns the first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    path = out_dir / f"{stamp}.json"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path


def plot_latency(results: list[dict], path: Path) -> Path:
    """CDF of the receive latencies of S3 and S6, one line per topology."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(12, 4.5))
    for ax, key in zip(axes, PLOTTED, strict=True):
        drawn = 0
        for r in results:
            values = (r.get("figures") or {}).get("latencies_ms") or []
            if r["scenario"] != key or not values:
                continue
            ordered = sorted(values)
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            ax.step(ordered, fractions, where="post", label=f"{r['topology']} (n={len(ordered)})")
            drawn += 1
        title = {"S3": "S3 online fan-out (one POST to all)", "S6": "S6 sustained (open-loop POSTs)"}[key]
        ax.set_title(title)
        ax.set_xlabel("receive latency (ms, log scale)")
        ax.set_ylabel("fraction of notifications received")
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        if drawn:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.legend(loc="lower right")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    figure.suptitle("Receive latency CDF: client receive time minus POST send time")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
