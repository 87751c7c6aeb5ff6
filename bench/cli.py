"""Command line of the benchmark: which scenarios on which topologies, and the output.

Without `--db`/`--processes` the plan is: every scenario on SQLite with one process,
every scenario on PostgreSQL with one process, then S3, S6 and S7 on PostgreSQL with two
processes and Redis, and S1, S2, S3 and S6 against the baseline server. A topology whose
PostgreSQL or Redis does not answer is skipped (and reported as skipped) in that default
plan; asked for explicitly, it is an error.
"""

import argparse
import dataclasses
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.pool import LoadError, LoadPool
from bench.report import machine_info, plot_latency, say, steps_table, table, write_json
from bench.scenarios import SCENARIOS
from bench.scenarios.common import (
    FULL,
    QUICK,
    Context,
    Deadline,
    ScenarioFailed,
    machine_busy_seconds,
    problems,
    wait_cluster_ready,
)
from bench.servers import ServerError, Servers, Topology, Unavailable
from tests.support.server import REPO_ROOT
from tests.support.services import DEFAULT_POSTGRES_URL, LOCAL_REDIS_URL, postgres_server_url

log = logging.getLogger("bench")

DEFAULT_PLAN = (
    (Topology("sqlite", 1), tuple(SCENARIOS)),
    (Topology("postgres", 1), tuple(SCENARIOS)),
    (Topology("postgres", 2), ("S3", "S6", "S7")),
    (Topology("baseline", 1), ("S1", "S2", "S3", "S6")),
)
RESULTS_DIR = REPO_ROOT / "bench" / "results"
RESET_TIMEOUT = 120.0
# Longest wait for the servers to go idle after a scenario, before the next one.
SETTLE_SECONDS = 120.0


def _size_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sizes (defaults: full run; --quick shrinks every one not given)")
    for spec in dataclasses.fields(FULL):
        flag = "--" + spec.name.replace("_", "-")
        kind = float if isinstance(getattr(FULL, spec.name), float) else int
        group.add_argument(
            flag,
            type=kind,
            default=None,
            metavar="N",
            help=f"default {getattr(FULL, spec.name):g} (quick {getattr(QUICK, spec.name):g})",
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load benchmark of the notification service (see bench/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every scenario")
    parser.add_argument("--scenarios", default=None, help="comma-separated subset, e.g. S1,S3 (default all)")
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgres", "baseline"),
        help="run one topology with this database (baseline: the stack alone, bench/baseline_server.py)",
    )
    parser.add_argument("--processes", type=int, choices=(1, 2), help="run one topology with 1 or 2 servers")
    parser.add_argument("--workers", type=int, default=3, help="client load processes (default 3)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_POSTGRES_URL") or postgres_server_url(),
        help="PostgreSQL server where the bench creates (and drops) its database (default "
        f"$BENCH_POSTGRES_URL, else $TEST_POSTGRES_URL, else {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--redis-url", default=LOCAL_REDIS_URL, help="Redis for two processes")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis db number (flushed)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench/results)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (target choice in S2 and S6)")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment variable for the servers (repeatable)",
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the database and the temporary folder (logs)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 2 when any scenario reports a problem")
    parser.add_argument(
        "--ack",
        action="store_true",
        help="clients connect as acknowledging clients (auth ack: true); default: plain clients",
    )
    _size_flags(parser)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    base = QUICK if args.quick else FULL
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(base)}
    args.sizes = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    selected = tuple(SCENARIOS)
    if args.scenarios:
        selected = tuple(s.strip().upper() for s in args.scenarios.split(",") if s.strip())
        unknown = [s for s in selected if s not in SCENARIOS]
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")
    args.selected = selected
    env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--server-env takes KEY=VALUE, got {item!r}")
        env[key] = value
    if args.quick:
        # A smoke run: heartbeats every second, so that two processes see each other's
        # users within a second of starting instead of five (see PRESENCE_TTL).
        env = {"PRESENCE_TTL": "3", **env}
    args.extra_env = env
    if args.out is None:
        args.out = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR
    return args


def plan(args: argparse.Namespace) -> tuple[list[tuple[Topology, tuple[str, ...]]], bool]:
    """The topologies to run with their scenarios, and whether it is the default plan."""
    if args.db or args.processes:
        return [(Topology(args.db or "sqlite", args.processes or 1), args.selected)], False
    steps = []
    for topology, keys in DEFAULT_PLAN:
        chosen = tuple(k for k in keys if k in args.selected)
        if chosen:
            steps.append((topology, chosen))
    return steps, True


def _entry(key: str, topology: Topology, sizes) -> dict:
    spec = SCENARIOS[key]
    return {
        "scenario": key,
        "title": spec.title,
        "topology": topology.name,
        "status": "ok",
        "error": None,
        "params": spec.params(sizes),
        "figures": {},
        "problems": [],
        "headline": "",
        "resources": {},
    }


def _now() -> str:
    """The current UTC time, ISO 8601 with milliseconds (to line up with server log lines)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _settle(ctx: Context, entry: dict) -> None:
    """Disconnect the scenario's clients and let the servers go idle before the next one."""
    try:
        # Clients left over (S2 disconnects its own): the time is in `settle_s`, not above.
        ctx.pool.call_all("reset", RESET_TIMEOUT, workers=ctx.pool.clients)
    except LoadError as exc:
        entry["teardown_error"] = str(exc)
    settle, idle = ctx.servers.wait_idle(SETTLE_SECONDS)
    entry["settle_s"] = round(settle, 2)
    if not idle:
        entry["settle_note"] = f"servers still busy {SETTLE_SECONDS:.0f} s after the scenario"


def run_scenario(ctx: Context, key: str, topology: Topology, results: list[dict]) -> dict:
    """Run one scenario, its entry appended to `results` at once; disconnects its clients."""
    spec = SCENARIOS[key]
    entry = _entry(key, topology, ctx.sizes)
    results.append(entry)
    dead = ctx.servers.dead()
    if dead:
        entry.update(status="error", error="; ".join(dead))
        return entry
    ctx.deadline = Deadline(spec.budget(ctx.sizes))
    entry["deadline_s"] = round(ctx.deadline.seconds)
    server_before = ctx.servers.sample()
    load_before = ctx.pool.cpu_seconds()
    busy_before = machine_busy_seconds()
    entry["started_at"] = _now()
    started = time.monotonic()
    interrupted = False
    try:
        spec.run(ctx, entry["figures"])
    except (ScenarioFailed, LoadError, OSError) as exc:
        entry.update(status="error", error=str(exc))
    except Exception as exc:  # noqa: BLE001  (a bug in one scenario must not stop the run)
        log.exception("scenario %s failed", key)
        entry.update(status="error", error=f"{type(exc).__name__}: {exc}")
    except BaseException:
        interrupted = True  # stop now: the caller kills the servers and the load processes
        entry.update(status="interrupted", error="interrupted")
        raise
    finally:
        elapsed = time.monotonic() - started
        entry["measured_until"] = _now()
        server_after = ctx.servers.sample()
        load_after = ctx.pool.cpu_seconds()
        busy = machine_busy_seconds() - busy_before
        load = {name: round(load_after.get(name, 0.0) - load_before.get(name, 0.0), 3) for name in load_after}
        server_cpu = server_after["cpu_s"] - server_before["cpu_s"]
        entry["elapsed_s"] = round(elapsed, 2)
        entry["resources"] = {
            "server_cpu_s": round(server_after["cpu_s"] - server_before["cpu_s"], 3),
            "server_cpu_share": round((server_after["cpu_s"] - server_before["cpu_s"]) / elapsed, 3)
            if elapsed > 0
            else None,
            "server_rss_start_mb": round(server_before["rss"] / 2**20, 1),
            "server_rss_end_mb": round(server_after["rss"] / 2**20, 1),
            "load_cpu_s": round(sum(load.values()), 3),
            "load_cpu_by_process_s": load,
            # CPU used on the machine by anything else meanwhile (other programs: noise).
            "other_cpu_s": round(max(0.0, busy - server_cpu - sum(load.values())), 3),
        }
        if not interrupted:
            _settle(ctx, entry)
        dead = ctx.servers.dead()
        if dead and entry["status"] == "ok":
            entry.update(status="error", error="; ".join(dead))
        entry["finished_at"] = _now()
        entry["problems"] = problems(entry["figures"])
        try:
            entry["headline"] = spec.headline(entry["figures"])
        except Exception as exc:  # noqa: BLE001  (a partial entry still gets reported)
            entry["headline"] = f"(no summary: {exc})"
    return entry


def run_topology(
    topology: Topology,
    keys: tuple[str, ...],
    args: argparse.Namespace,
    pool: LoadPool,
    optional: bool,
    document: dict,
) -> None:
    """Start the servers of `topology`, run `keys` on them, stop them (always).

    The topology and each scenario go into `document` as soon as they start or end,
    so an interrupted run still has them.
    """
    info: dict = {"name": topology.name, "db": topology.db, "processes": topology.processes, "status": "ok"}
    document["topologies"].append(info)
    results: list[dict] = document["scenarios"]
    servers = Servers(
        topology,
        pg_url=args.pg_url,
        redis_url=args.redis_url,
        redis_db=args.redis_db,
        extra_env=args.extra_env,
        keep=args.keep_temp,
    )
    servers.idle_window = 0.2 if args.quick else 0.5
    try:
        say(f"[{topology.name}] {topology.processes} server process(es) on a fresh {topology.db} database")
        started = time.monotonic()
        try:
            servers.start()
        except Unavailable as exc:
            status = "skipped" if optional else "error"
            info.update(status=status, error=str(exc))
            say(f"[{topology.name}] {status}: {exc}")
            for key in keys:
                results.append({**_entry(key, topology, args.sizes), "status": status, "error": str(exc)})
            return
        except (ServerError, OSError) as exc:
            info.update(status="error", error=str(exc))
            say(f"[{topology.name}] error: {exc}")
            for key in keys:
                results.append({**_entry(key, topology, args.sizes), "status": "error", "error": str(exc)})
            return
        info["start_s"] = round(time.monotonic() - started, 2)
        info["healthy_at"] = _now()
        info["server_pids"] = servers.pids
        info["database"] = "postgresql" if topology.db == "postgres" else "sqlite file"
        ctx = Context(servers=servers, pool=pool, sizes=args.sizes, seed=args.seed)
        if topology.processes > 1:
            try:
                ready = wait_cluster_ready(ctx)
            except (LoadError, ScenarioFailed, OSError) as exc:
                ready = None
                info["cross_process_probe_error"] = str(exc)
            info["cross_process_ready_s"] = round(ready, 2) if ready is not None else None
            say(
                f"[{topology.name}] users of each process counted online by the others "
                + (f"{ready:.1f} s after start" if ready is not None else "NOT within 30 s")
            )
        for key in keys:
            say(f"[{topology.name}] {key} {SCENARIOS[key].title} ...")
            entry = run_scenario(ctx, key, topology, results)
            outcome = entry["headline"] if entry["status"] == "ok" else f"{entry['status']}: {entry['error']}"
            say(f"[{topology.name}] {key} done in {entry.get('elapsed_s', 0):.1f} s: {outcome}")
    finally:
        servers.stop()
        info["server_log"] = servers.log_report()
        if args.keep_temp:
            info["temp_dir"] = str(servers.workdir)
            info["kept_database_url"] = servers.database_url
        servers.cleanup()
        logged = info["server_log"]
        if logged["problem_lines"]:
            say(f"[{topology.name}] the servers logged {logged['problem_lines']} warning/error line(s)")


def _interrupt(signum, _frame) -> None:
    """First SIGINT/SIGTERM: stop the run (the finally blocks stop every process); later ones: ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every scenario ran, 1 when one could not, 2 (--strict) on problems."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.ack:  # read by the load processes (bench/loadgen.py), which inherit the environment
        os.environ["BENCH_ACK"] = "1"
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    steps, optional = plan(args)
    started_at = datetime.now(UTC)
    document: dict = {
        "machine": machine_info(),
        "quick": args.quick,
        "acknowledging_clients": args.ack,
        "sizes": dataclasses.asdict(args.sizes),
        "load_processes": {"clients": args.workers, "poster": 1},
        "plan": [{"topology": t.name, "scenarios": list(k)} for t, k in steps],
        "started_at": started_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "topologies": [],
        "scenarios": [],
    }
    interrupted = False
    try:
        pool = LoadPool(args.workers)
        document["load_processes"]["fd_limits"] = pool.fd_limits
        try:
            for topology, keys in steps:
                run_topology(topology, keys, args, pool, optional, document)
        finally:
            pool.close()
    except KeyboardInterrupt:
        interrupted = True
        document["interrupted"] = True
        say("interrupted: servers and load processes stopped; writing what was measured")
    finished = datetime.now(UTC)
    document["finished_at"] = finished.isoformat(timespec="seconds").replace("+00:00", "Z")
    document["elapsed_s"] = round((finished - started_at).total_seconds(), 1)

    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    path = write_json(document, args.out, stamp)
    png = plot_latency(document["scenarios"], args.out / "latency.png")
    say()
    for line in table(document["scenarios"]):
        say(line)
    say()
    for line in steps_table(document["scenarios"]):
        say(line)
    for info in document["topologies"]:
        logged = info.get("server_log") or {}
        if logged.get("problem_lines"):
            count = logged["problem_lines"]
            say(f"[{info['name']}] server log: {count} warning/error line(s), most frequent:")
            for item in logged["most_frequent"][:5]:
                say(f"    {item['count']} x {item['line']}")
    if any(i.get("server_log", {}).get("problem_lines") for i in document["topologies"]):
        say()
    say(f"results: {path} (also {args.out / 'latest.json'}), plot: {png}")
    if interrupted:
        return 130
    if any(r["status"] == "error" for r in document["scenarios"]):
        return 1
    if args.strict and any(r["problems"] for r in document["scenarios"]):
        return 2
    return 0
