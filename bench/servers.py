"""The server under test: fresh database, `python wsgi.py` process(es), their resource use.

A topology is a database (SQLite file in a temporary folder, or a PostgreSQL
database created for the run and dropped after it) and one or two server processes;
two share a Socket.IO space through Redis (`SOCKETIO_MESSAGE_QUEUE`) on a database
number of their own, flushed before and after.
"""

import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

from bench.tokens import random_secret

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
MIGRATE_TIMEOUT = 180.0
# Seconds a stopping server may take for its graceful stop before it is killed.
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
# Rate limits a benchmark would hit by design; an empty value turns one off.
RATE_LIMIT_SETTINGS = (
    "RATE_LIMIT_AUTH_FAILURES",
    "RATE_LIMIT_USER",
    "RATE_LIMIT_ADMIN",
    "RATE_LIMIT_SOCKET_CONNECT",
    "RATE_LIMIT_SOCKET_EVENTS",
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the bench dies (Linux), own session."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def check_postgres(admin_url: str) -> None:
    """Raise Unavailable unless PostgreSQL answers at `admin_url`."""
    import psycopg2

    try:
        psycopg2.connect(admin_url, connect_timeout=3).close()
    except psycopg2.Error as exc:
        raise Unavailable(f"PostgreSQL not reachable at {admin_url}: {' '.join(str(exc).split())}") from exc


def check_redis(url: str) -> None:
    """Raise Unavailable unless Redis answers at `url`."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        raise Unavailable(f"Redis not reachable at {url}: {exc}") from exc


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
        self.pg_database: str | None = None
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
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

    def _env(self, port: int | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env.update(
            APP_ENV="production",
            DATABASE_URL=self.database_url,
            JWT_SECRET_KEY=self.secret,
            LOG_LEVEL="WARNING",
            HOST=HOST,
            GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT),
            PYTHONUNBUFFERED="1",
            # The load generator is one client address sending as one admin, on purpose.
            **dict.fromkeys(RATE_LIMIT_SETTINGS, ""),
        )
        if port is not None:
            env["PORT"] = str(port)
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
        import psycopg2

        check_postgres(self.pg_url)
        name = f"notification_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        conn = psycopg2.connect(self.pg_url, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        self.pg_database = name
        self.database_url = _with_database(self.pg_url, name)

    def _drop_database(self) -> None:
        if not self.pg_database or self.keep:
            return
        import psycopg2

        try:
            conn = psycopg2.connect(self.pg_url, connect_timeout=5)
            try:
                conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
            finally:
                conn.close()
            self.pg_database = None
        except psycopg2.Error as exc:
            log.warning("could not drop database %s: %s", self.pg_database, exc)

    def _flush_redis(self) -> None:
        if self.topology.processes > 1:
            import redis

            redis.Redis.from_url(self.redis_url, socket_connect_timeout=3, socket_timeout=10).flushdb()

    def _migrate(self) -> None:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                cwd=REPO,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=MIGRATE_TIMEOUT,
            )
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
        command = ["-m", "bench.baseline_server"] if self.topology.db == BASELINE else ["wsgi.py"]
        for index in range(self.topology.processes):
            port = _free_port()
            log_path = self.workdir / f"server-{index}.log"
            with open(log_path, "wb") as log_file:
                proc = subprocess.Popen(
                    [sys.executable, *command],
                    cwd=REPO,
                    env=self._env(port),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            self.procs.append(proc)
            self.logs.append(log_path)
            self.urls.append(f"http://{HOST}:{port}")
            self._ps[proc.pid] = psutil.Process(proc.pid)
        deadline = time.monotonic() + START_TIMEOUT
        for proc, url, log_path in zip(self.procs, self.urls, self.logs, strict=True):
            self._wait_healthy(proc, url, log_path, deadline)

    def _wait_healthy(self, proc: subprocess.Popen, url: str, log_path: Path, deadline: float) -> None:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise ServerError(f"server exited with code {proc.returncode} at start:\n{tail}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ServerError(f"server at {url} not healthy within {START_TIMEOUT:.0f}s")

    # -- while running ------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def dead(self) -> list[str]:
        """A description of each server process that has exited."""
        return [
            f"server {i} (pid {p.pid}) exited with code {p.returncode}"
            for i, p in enumerate(self.procs)
            if p.poll() is not None
        ]

    def sample(self) -> dict:
        """CPU seconds (user + system), RSS bytes and open fds, per process and in total."""
        per = []
        for proc in self.procs:
            process = self._ps[proc.pid]
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu = times.user + times.system
                    rss = process.memory_info().rss
                    fds = process.num_fds()
                self._last[proc.pid] = (cpu, rss)
            except psutil.Error:
                cpu, rss = self._last.get(proc.pid, (0.0, 0))
                fds = 0
            per.append({"pid": proc.pid, "cpu_s": cpu, "rss": rss, "fds": fds})
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
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_TIMEOUT + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(10)
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
        for index, path in enumerate(self.logs):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if not line.strip():
                    continue
                line = line.replace(f"{REPO}/", "")  # paths as the repository names them
                lines.append(f"[server {index}] {line}")
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
