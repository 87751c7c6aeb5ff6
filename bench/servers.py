"""The server under test: fresh database, `python wsgi.py` process(es), their resource use.

A topology is a database (SQLite file in a temporary folder, or a PostgreSQL
database created for the run and dropped after it) and one or two server processes;
two share a Socket.IO space through Redis (`SOCKETIO_MESSAGE_QUEUE`) on a database
number of their own, flushed before and after.
"""

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2
import redis

from tests.support.server import REPO_ROOT, ServerProcess, ServerStartError, flask_command, stop_all
from tests.support.services import PostgresDatabase, postgres_problem, redis_problem
from tests.support.tokens import random_secret

log = logging.getLogger(__name__)

MIGRATE_TIMEOUT = 180.0
# Seconds a stopping server waits for running requests (its GRACEFUL_TIMEOUT), well within
# the launcher's STOP_TIMEOUT before it is killed.
GRACEFUL_TIMEOUT = 5
# Variables of the caller's environment that would change what is measured.
DROPPED_ENV = (
    "DATABASE_URL",
    "SOCKETIO_MESSAGE_QUEUE",
    "CORS_ALLOWED_ORIGINS",
    "FLASK_RUN_FROM_CLI",
    "FLASK_APP",
    "APP_ENV",
    "HOST",
    "PORT",
    "JWT_SECRET_KEY",
    "LOG_LEVEL",
)
LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback|Exception)\b")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+\s*")
BLUR = re.compile(r"\b(?:[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-zA-Z_-]{20}|\d+(?:\.\d+)?)\b")


# The "database" of the floor topology: bench/baseline_server.py, the stack without the service.
BASELINE = "baseline"


class Unavailable(RuntimeError):
    """A service the topology needs (PostgreSQL, Redis) does not answer."""


class ServerError(RuntimeError):
    """The server could not be set up, or did not start."""


@dataclass(frozen=True)
class Topology:
    """Which database and how many server processes."""

    db: str
    processes: int

    @property
    def name(self) -> str:
        return f"{self.db}/{self.processes}p"


def check_postgres(admin_url: str) -> None:
    """Raise Unavailable unless PostgreSQL answers at `admin_url`."""
    problem = postgres_problem(admin_url)
    if problem:
        raise Unavailable(problem)


def check_redis(url: str) -> None:
    """Raise Unavailable unless Redis answers at `url`."""
    problem = redis_problem(url)
    if problem:
        raise Unavailable(problem)


class Servers:
    """The server processes of one topology, from a fresh database to a stopped process.

    Use as a context manager: leaving it stops every process (SIGTERM, then SIGKILL),
    drops the PostgreSQL database, flushes the Redis database and removes the
    temporary folder (unless `keep`).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        pg_url: str,
        redis_url: str,
        redis_db: int,
        extra_env: dict[str, str] | None = None,
        keep: bool = False,
    ) -> None:
        self.topology = topology
        self.pg_url = pg_url
        self.redis_url = f"{redis_url.rstrip('/')}/{redis_db}"
        self.extra_env = extra_env or {}
        self.keep = keep
        self.secret = random_secret(48)
        self.workdir = Path(tempfile.mkdtemp(prefix="notification-bench-"))
        self.database_url = ""
        self.pg_database: PostgresDatabase | None = None
        self.servers: list[ServerProcess] = []
        self.urls: list[str] = []
        self._ps: dict[int, psutil.Process] = {}
        self._last: dict[int, tuple[float, int]] = {}
        # Seconds over which `wait_idle` measures the servers' CPU use.
        self.idle_window = 0.5

    def __enter__(self) -> "Servers":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- setting up -------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(
            APP_ENV="production",
            DATABASE_URL=self.database_url,
            JWT_SECRET_KEY=self.secret,
            LOG_LEVEL="WARNING",
            GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT),
            PYTHONUNBUFFERED="1",
            # The rate limits are left at their defaults: the load generator is one client
            # address sending as one admin, as a producer is, and must not be refused.
        )
        if self.topology.processes > 1:
            env["SOCKETIO_MESSAGE_QUEUE"] = self.redis_url
        env.update(self.extra_env)
        return env

    def _create_database(self) -> None:
        if self.topology.db == BASELINE:
            return
        if self.topology.db == "sqlite":
            self.database_url = f"sqlite:///{self.workdir / 'bench.db'}"
            return
        check_postgres(self.pg_url)
        self.pg_database = PostgresDatabase(self.pg_url, prefix=f"notification_bench_{os.getpid()}").create()
        self.database_url = self.pg_database.url

    def _drop_database(self) -> None:
        if not self.pg_database or self.keep:
            return
        try:
            self.pg_database.drop()
            self.pg_database = None
        except psycopg2.Error as exc:
            log.warning("could not drop database %s: %s", self.pg_database.name, exc)

    def _flush_redis(self) -> None:
        if self.topology.processes > 1:
            redis.Redis.from_url(self.redis_url, socket_connect_timeout=3, socket_timeout=10).flushdb()

    def _migrate(self) -> None:
        try:
            done = flask_command(self._env(), "db", "upgrade", timeout=MIGRATE_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"db upgrade did not finish within {MIGRATE_TIMEOUT:.0f}s") from exc
        if done.returncode != 0:
            raise ServerError(f"db upgrade failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def start(self) -> None:
        """Create the database, migrate it, start the processes, wait until healthy."""
        if self.topology.processes > 1:
            check_redis(self.redis_url)
        self._create_database()
        self._flush_redis()
        if self.topology.db != BASELINE:
            self._migrate()
        command = ("-m", "bench.baseline_server") if self.topology.db == BASELINE else ("wsgi.py",)
        for index in range(self.topology.processes):
            server = ServerProcess(
                self._env(),
                self.workdir / f"server-{index}.log",
                name=f"server {index}",
                command=command,
                own_session=True,
            )
            self.servers.append(server.start())
            self.urls.append(server.url)
            self._ps[server.pid] = psutil.Process(server.pid)
        for server in self.servers:
            try:
                server.wait_ready()
            except ServerStartError as exc:
                raise ServerError(str(exc)) from exc

    # -- while running ------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    def dead(self) -> list[str]:
        """A description of each server process that has exited."""
        return [
            f"{server.name} (pid {server.pid}) exited with code {server.poll()}"
            for server in self.servers
            if server.poll() is not None
        ]

    def sample(self) -> dict:
        """CPU seconds (user + system), RSS bytes and open fds, per process and in total."""
        per = []
        for pid, process in self._ps.items():
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu = times.user + times.system
                    rss = process.memory_info().rss
                    fds = process.num_fds()
                self._last[pid] = (cpu, rss)
            except psutil.Error:
                cpu, rss = self._last.get(pid, (0.0, 0))
                fds = 0
            per.append({"pid": pid, "cpu_s": cpu, "rss": rss, "fds": fds})
        return {
            "cpu_s": sum(p["cpu_s"] for p in per),
            "rss": sum(p["rss"] for p in per),
            "fds": sum(p["fds"] for p in per),
            "processes": per,
        }

    def wait_idle(self, max_seconds: float, threshold: float = 0.1) -> tuple[float, bool]:
        """Wait until the servers used less than `threshold` of a core over `idle_window` seconds.

        Returns the seconds waited and whether they did go idle within `max_seconds`.
        """
        window = self.idle_window
        threshold *= window
        started = time.monotonic()
        before = self.sample()["cpu_s"]
        while time.monotonic() - started < max_seconds:
            time.sleep(window)
            now = self.sample()["cpu_s"]
            if now - before < threshold:
                return time.monotonic() - started, True
            before = now
        return time.monotonic() - started, False

    # -- stopping -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), drop the database, flush Redis."""
        stop_all(self.servers)
        self._drop_database()
        try:
            self._flush_redis()
        except Exception as exc:  # noqa: BLE001  (cleanup: report and go on)
            log.warning("could not flush %s: %s", self.redis_url, exc)

    def log_report(self, limit: int = 20) -> dict:
        """What the servers logged (WARNING and above, and anything written to stderr).

        Gives the number of lines, how many look like problems, the most frequent
        distinct lines (timestamps and ids blurred) and the first and last lines.
        """
        lines: list[str] = []
        problems = 0
        kinds: Counter = Counter()
        for server in self.servers:
            try:
                text = server.log_path.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if not line.strip():
                    continue
                line = line.replace(f"{REPO_ROOT}/", "")  # paths as the repository names them
                lines.append(f"[{server.name}] {line}")
                if LOG_PROBLEM.search(line):
                    problems += 1
                kinds[BLUR.sub("#", TIMESTAMP.sub("", line))[:200]] += 1
        return {
            "lines": len(lines),
            "problem_lines": problems,
            "most_frequent": [{"count": n, "line": text} for text, n in kinds.most_common(limit)],
            "first_lines": lines[:limit],
            "last_lines": lines[-limit:] if len(lines) > limit else [],
        }

    def cleanup(self) -> None:
        """Remove the temporary folder (database file, logs) unless asked to keep it."""
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
