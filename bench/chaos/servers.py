"""The servers of a chaos run (the tests' cluster, or one SQLite server) and the faults done to them."""

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

from bench.chaos.settings import Journal, Settings
from tests.support.cluster import Cluster
from tests.support.live_server import LiveServer
from tests.support.redis_server import RedisServer
from tests.support.server import STOP_TIMEOUT, ServerProcess

CLUSTER_PROCESSES = ("A", "B")
GRACEFUL_TIMEOUT = 20  # the servers' default: how long a stopping process may take
FAULTS = ("kill", "term", "redis")
FAULT_AT = {"kill": 0.15, "term": 0.4, "redis": 0.65}  # share of the run's duration
STORED_COLUMNS = "id, user_id, status, received_at IS NOT NULL, created_at, delivered_at, received_at"


def server_env(settings: Settings) -> dict[str, str]:
    """What the servers of a chaos run get on top of their usual environment."""
    return {
        "PRESENCE_TTL": str(settings.presence_ttl),
        "DELIVERY_CONFIRM_TIMEOUT": str(settings.confirm_timeout),
        "GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
    }


class ChaosCluster(Cluster):
    """The tests' cluster (PostgreSQL, private Redis), its servers with the run's settings."""

    def __init__(self, workdir: Path, extra_env: dict[str, str]):
        super().__init__(workdir)
        self.extra_env = extra_env

    def env(self) -> dict:
        return {**super().env(), **self.extra_env}


class Stored(NamedTuple):
    """One notification row as the run ends (times as the database driver returns them)."""

    user_id: str
    status: str
    confirmed: bool  # received_at is set
    created_at: object
    delivered_at: object
    received_at: object


@dataclass
class Deployment:
    """The servers under test, as the run uses them."""

    servers: list[ServerProcess]
    redis: RedisServer | None
    token: Callable[..., str]
    rows: Callable[[str], list[tuple]]
    description: str
    down: set[str] = field(default_factory=set)  # names of the servers a fault took down

    def running(self) -> list[ServerProcess]:
        """The servers clients and POSTs may go to: those no fault has taken down."""
        return [server for server in self.servers if server.name not in self.down]

    def notifications(self) -> dict[str, Stored]:
        """Every notification in the database, by id."""
        found = self.rows(f"SELECT {STORED_COLUMNS} FROM notifications")
        return {str(row[0]): Stored(row[1], str(row[2]), bool(row[3]), *row[4:]) for row in found}

    def log_paths(self) -> list[Path]:
        paths = [server.log_path for server in self.servers]
        return paths + ([self.redis.log_path] if self.redis is not None else [])

    def restore(self) -> None:
        """Start again whatever a fault left stopped."""
        for server in self.servers:
            restart(server)
        if self.redis is not None and not self.redis.running:
            self.redis.start()
        self.down.clear()


@contextlib.contextmanager
def deployed(settings: Settings, workdir: Path, sqlite: bool):
    """Fresh servers for a run: two processes on PostgreSQL with a private Redis, or one on SQLite."""
    env = server_env(settings)
    if sqlite:
        server = LiveServer(workdir)
        server.env.update(env)
        server.migrate()
        try:
            server.start()
            yield Deployment([server], None, server.token, server.rows, "1 process, SQLite, no Redis")
        finally:
            server.stop()
        return
    cluster = ChaosCluster(workdir, env)
    try:
        cluster.setup()
        servers = cluster.add_servers(*CLUSTER_PROCESSES)
        description = f"{len(servers)} processes, PostgreSQL, private Redis"
        yield Deployment(servers, cluster.redis, cluster.token, cluster.database.rows, description)
    finally:
        cluster.teardown()


def restart(server: ServerProcess) -> None:
    """Start a server that was stopped or killed again (same port) and wait until it serves."""
    if not server.running:
        server.start()
    server.wait_ready()


class Faults:
    """Kill one process and restart it; stop the other and restart it; restart Redis: one after
    the other (each once the previous one is over), each at its share of the run's duration."""

    def __init__(self, deployment: Deployment, settings: Settings, which: tuple[str, ...], journal: Journal):
        self.deployment = deployment
        self.settings = settings
        self.which = sorted(which, key=FAULT_AT.__getitem__)
        self.journal = journal
        self.applied: list[str] = []  # what was done when, as printed
        self.errors: list[str] = []
        servers = list(deployment.servers)
        random.Random(settings.seed).shuffle(servers)
        self.targets = {"kill": servers[0], "term": servers[-1]}

    def run(self, stop: threading.Event) -> None:
        for name in self.which:
            stop.wait(max(0.0, FAULT_AT[name] * self.settings.duration - self.journal.now()))
            if stop.is_set():
                return
            try:
                getattr(self, name)()
            except (Exception, pytest.fail.Exception) as exc:  # noqa: BLE001  (reported with the results)
                self.errors.append(self.journal.note(f"fault {name} failed: {exc}"))

    def _record(self, text: str) -> None:
        self.applied.append(self.journal.note(text))

    def _back(self, server: ServerProcess, after: str) -> None:
        time.sleep(self.settings.down)
        restart(server)
        self.deployment.down.discard(server.name)
        self._record(f"{server.name} restarted after {after}")

    def kill(self) -> None:
        server = self.targets["kill"]
        self.deployment.down.add(server.name)
        pid = server.pid
        server.kill()
        self._record(f"SIGKILL {server.name} (pid {pid})")
        self._back(server, "SIGKILL")

    def term(self) -> None:
        server = self.targets["term"]
        self.deployment.down.add(server.name)
        pid = server.pid
        server.send_signal(signal.SIGTERM)
        self._record(f"SIGTERM {server.name} (pid {pid})")
        code = server.wait_exit(GRACEFUL_TIMEOUT + STOP_TIMEOUT)
        self._record(f"{server.name} exited with {code} after SIGTERM")
        self._back(server, "SIGTERM")

    def redis(self) -> None:
        redis = self.deployment.redis
        redis.shutdown()
        self._record("Redis shut down (nosave)")
        time.sleep(self.settings.down)
        redis.start()
        self._record("Redis restarted")
