"""`python -m bench.chaos`: the chaos run of the delivery guarantees (see the package's docstring).

Exit code 0 when the guarantees held, 1 when the run saw one broken, 2 when it could not be set up.
"""

import argparse
import dataclasses
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from bench.chaos.run import run
from bench.chaos.servers import FAULTS
from bench.chaos.settings import FULL, QUICK, Settings
from tests.support.server import ServerStartError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Chaos run of the delivery guarantees: users come and go every way a connection "
        "ends while an admin posts and processes and Redis fail; then every notification is accounted for.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short run: sizes not given take the quick preset"
    )
    parser.add_argument("--sqlite", action="store_true", help="one process on SQLite, without Redis")
    parser.add_argument(
        "--faults",
        default=None,
        help=f"comma-separated subset of {','.join(FAULTS)}, or none (default: all with two processes, "
        "none with --sqlite; with --sqlite, kill and term apply to its one process)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the logs and CSV files go (default: a new temporary folder, removed after a passing run)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    sizes = parser.add_argument_group("sizes and timings (default: the full run's; [the quick preset's])")
    for spec in dataclasses.fields(Settings):
        default, quick = getattr(FULL, spec.name), getattr(QUICK, spec.name)
        sizes.add_argument(
            "--" + spec.name.replace("_", "-"),
            type=type(default),
            default=None,
            metavar="N",
            help=f"{spec.metadata['help']}; {default:g}" + (f" [{quick:g}]" if quick != default else ""),
        )
    args = parser.parse_args(argv)
    given = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(Settings)}
    base = QUICK if args.quick else FULL
    args.settings = dataclasses.replace(
        base, **{name: value for name, value in given.items() if value is not None}
    )
    if args.settings.users < 2 or args.settings.rate <= 0 or args.settings.duration <= 0:
        parser.error("--users must be at least 2, --rate and --duration above 0")
    args.fault_names = None
    if args.faults is not None:
        args.fault_names = tuple(
            name.strip() for name in args.faults.split(",") if name.strip() not in ("", "none")
        )
        unknown = sorted(set(args.fault_names) - set(FAULTS))
        if unknown:
            parser.error(f"unknown fault(s) {', '.join(unknown)}: choose from {', '.join(FAULTS)}")
        if args.sqlite and "redis" in args.fault_names:
            parser.error("--sqlite runs without Redis: no redis fault")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A silent client's writer gives up after a while and says so: expected here.
    logging.getLogger("engineio.client").setLevel(logging.CRITICAL)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        outcome = run(args.settings, workdir, sqlite=args.sqlite, faults=args.fault_names)
    except (ServerStartError, pytest.skip.Exception, pytest.fail.Exception) as exc:
        print(f"could not set up the run: {exc}", file=sys.stderr)
        return 2
    if outcome.passed and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
        outcome.report.append("(files removed: the run passed; --workdir keeps them)")
    text = "\n".join(outcome.report) + "\n"
    print("\n" + text, end="", flush=True)
    if args.out is not None:
        args.out.write_text(text)
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
