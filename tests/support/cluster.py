"""Several server processes sharing a PostgreSQL database and, optionally, a private Redis."""

import json
import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import requests

from tests.support.clients import RecordingClient
from tests.support.logs import PRESENCE_REGISTERED, USER_CONNECTED, logged, logged_values
from tests.support.redis_server import RedisServer, redis_server_binary
from tests.support.server import ServerProcess, flask_command, stop_all
from tests.support.services import PostgresDatabase, postgres_problem
from tests.support.skips import skip_or_fail
from tests.support.tokens import bearer, mint_token, random_secret
from tests.support.waiting import ready_or_fail, wait_for
from tests.support.wire import ADMIN_ROUTE

log = logging.getLogger(__name__)

PRESENCE_TTL = 3  # seconds; short, so that a killed process stops counting quickly
CONFIRM_TIMEOUT = 3  # seconds; short, so that what a killed process never sent comes back quickly
PRESENCE_PREFIX = "notifications:presence"  # the server's default key prefix (not overridden)
HTTP_TIMEOUT = 30  # seconds for a request to a process whose database a test may hold locked
LOG_WAIT_TIMEOUT = 15
DELIVERY_TIMEOUT = 15  # seconds for a notification to reach a socket of a cluster process
FIGURES_FILE = "cluster-figures.json"
QUEUE_CHANNEL = "notifications"  # the servers' shared message-queue channel; `<it>:<presence id>` each


def unique(name: str) -> str:
    """A user id of this test alone, so rows of earlier tests in the same database never interfere."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


class ClusterServer(ServerProcess):
    """One `python wsgi.py` process of a cluster, logging to a file of its own.

    With `shared` (a message queue is configured) it is ready once it also registered
    its presence in Redis.
    """

    def __init__(self, name: str, env: dict, workdir: Path, port: int | None = None, shared: bool = True):
        super().__init__(env, workdir / f"server-{name}.log", port=port, name=name)
        self.shared = shared

    def __repr__(self) -> str:
        return f"<server {self.name} :{self.port}>"

    def ready(self) -> bool:
        return super().ready() and (not self.shared or logged(self.log_since_start(), PRESENCE_REGISTERED))

    def presence_id(self) -> str:
        """The id under which this process last registered its sockets in Redis."""
        registrations = logged_values(self.log(), PRESENCE_REGISTERED)
        assert registrations, f"{self} never registered its presence:\n{self.log_tail()}"
        return registrations[-1][2]

    def logged_connection_of(self, user_id: str) -> bool:
        return logged(self.log(), USER_CONNECTED, user_id)

    def wait_log(self, template: str, *values, since: int = 0, timeout: float = LOG_WAIT_TIMEOUT) -> bool:
        """Wait for a line written from `template` (see tests/support/logs.py) after byte `since`."""
        return wait_for(
            lambda: logged(self.log_since(since), template, *values),
            timeout=timeout,
            message=lambda: f"{template!r} in the log of {self}:\n{self.log_tail(20)}",
        )


class Cluster:
    """PostgreSQL database, optional private Redis, and server processes sharing one secret."""

    def __init__(self, workdir: Path, with_redis: bool = True):
        self.workdir = workdir
        self.database = PostgresDatabase(prefix="notifications_e2e")
        self.redis = RedisServer(workdir) if with_redis else None
        self.secret = random_secret(48)
        self.servers: dict[str, ClusterServer] = {}
        self.clients: list[RecordingClient] = []

    # ---- life cycle ----------------------------------------------------------

    def setup(self) -> None:
        if self.redis is not None:
            redis_server_binary()
        problem = postgres_problem(self.database.server_url)
        if problem:
            skip_or_fail(problem)
        self.database.create()
        self.migrate()
        if self.redis is not None:
            self.redis.start()

    def env(self) -> dict:
        env = dict(os.environ)
        for name in ("FLASK_RUN_FROM_CLI", "SOCKETIO_MESSAGE_QUEUE", "FLASK_APP", "PRESENCE_KEY_PREFIX"):
            env.pop(name, None)
        env.update(
            DATABASE_URL=self.database.url,
            JWT_SECRET_KEY=self.secret,
            PRESENCE_TTL=str(PRESENCE_TTL),
            DELIVERY_CONFIRM_TIMEOUT=str(CONFIRM_TIMEOUT),
            HOST="127.0.0.1",
            APP_ENV="development",
            LOG_LEVEL="INFO",
        )
        if self.redis is not None:
            env["SOCKETIO_MESSAGE_QUEUE"] = self.redis.url
        return env

    def migrate(self) -> None:
        result = self.cli("db", "upgrade")
        assert result.returncode == 0, f"`flask db upgrade` failed:\n{result.stdout}\n{result.stderr}"

    def cli(self, *args: str, port: int | None = None):
        """`python -m flask --app wsgi ARGS...` with the servers' environment."""
        env = self.env()
        if port is not None:
            env["PORT"] = str(port)
        return flask_command(env, *args)

    def add_servers(self, *names: str, ports: dict | None = None) -> list[ClusterServer]:
        """Start one process per name, in parallel, and wait until each serves."""
        started = []
        for name in names:
            server = ClusterServer(
                name, self.env(), self.workdir, port=(ports or {}).get(name), shared=self.redis is not None
            )
            self.servers[name] = server
            started.append(server.start())
        ready_or_fail(*started)
        return started

    def ensure_running(self) -> None:
        """Bring back what an earlier test stopped: Redis, then every stopped server."""
        if self.redis is not None and not self.redis.running:
            self.redis.start()
        ready_or_fail(*[server.start() for server in self.servers.values() if not server.running])

    def teardown(self) -> None:
        self.disconnect_clients()
        stop_all(self.servers.values())
        for server in self.servers.values():
            if server.killed:
                log.error("%s was still running some time after SIGTERM: killed", server)
        if self.redis is not None:
            self.redis.stop()
        self.database.drop()

    # ---- helpers for tests -----------------------------------------------------

    def token(self, user_id: str, admin: bool = False) -> str:
        return mint_token(self.secret, user_id, admin=admin)

    def post(self, base_url: str, user_ids, message: str) -> requests.Response:
        """POST /v1/admin/notifications as an admin to the server (or proxy) at `base_url`."""
        return requests.post(
            base_url + ADMIN_ROUTE,
            json={"userIds": list(user_ids), "message": message},
            headers=bearer(self.token("ops", admin=True)),
            timeout=HTTP_TIMEOUT,
        )

    def send(self, base_url: str, user_ids, message: str) -> dict[str, dict]:
        """POST and expect 201: user id -> the notification object the server answered."""
        response = self.post(base_url, user_ids, message)
        assert response.status_code == 201, f"{response.status_code} {response.text}"
        return {n["userId"]: n for n in response.json()["notifications"]}

    def connect(
        self, server_or_url, user_id: str, transports=("websocket",), name: str = "", headers=None, ack=True
    ) -> RecordingClient:
        """A recording client of `user_id` (acknowledging unless `ack=False`), connected to a
        server (or a proxy's URL)."""
        url = server_or_url.url if isinstance(server_or_url, ServerProcess) else server_or_url
        client = RecordingClient(user_id, name)
        self.clients.append(client)
        return client.open(url, self.token(user_id), transports=transports, headers=headers, ack=ack)

    def disconnect_clients(self) -> None:
        clients, self.clients = self.clients, []
        for client in clients:
            client.close()

    def log_tails(self) -> str:
        parts = [
            f"---- {server} log ({server.log_path}) ----\n{server.log_tail()}"
            for server in self.servers.values()
        ]
        if self.redis is not None:
            parts.append(f"---- {self.redis} ----\n{self.redis.log_tail(15)}")
        return "\n".join(parts)


@contextmanager
def running_cluster(tmp_path_factory, *names: str, with_redis: bool = True):
    """A cluster with server processes `names`, torn down afterwards (for module fixtures)."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), with_redis=with_redis)
    try:
        cluster.setup()
        cluster.add_servers(*names)
        yield cluster
    finally:
        cluster.teardown()


@contextmanager
def watched(request, cluster: Cluster, extra=None):
    """Every process running for the test; logs on failure, the test's sockets closed after."""
    cluster.ensure_running()
    failed_before = request.session.testsfailed
    yield cluster
    log_tails_if_failed(request, cluster, failed_before, extra=extra)
    cluster.disconnect_clients()


def log_tails_if_failed(request, cluster: Cluster, failed_before: int, extra=None) -> None:
    """Log every process's last lines when the test that just ran failed.

    Called from a fixture's teardown: pytest shows that section with the failure.
    """
    if request.session.testsfailed > failed_before:
        more = f"\n{extra()}" if extra else ""
        log.error("logs after the failure of %s:\n%s%s", request.node.nodeid, cluster.log_tails(), more)


def save_figures(folder: Path, group: str, figures: dict) -> None:
    """Keep measured figures in `folder`/cluster-figures.json (one entry per group) and log them."""
    path = folder / FIGURES_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    data[group] = {**figures, "recordedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    log.info("figures %s: %s", group, json.dumps(figures, sort_keys=True))


class QueueWatch:
    """Every message the servers publish on the cluster's Redis, by channel, as it is published.

    Subscribed to the shared channel and every process's own (`notifications:<presence id>`),
    so a test sees which process each message was sent to.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.pubsub = cluster.redis.client().pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(QUEUE_CHANNEL, f"{QUEUE_CHANNEL}:*")
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.2)
            except Exception:  # noqa: BLE001 - Redis stopped by a test: nothing more to see
                return
            if message is not None:
                with self._lock:
                    self.messages.append((message["channel"].decode(), json.loads(message["data"])))

    @staticmethod
    def channel_of(server: ClusterServer) -> str:
        return f"{QUEUE_CHANNEL}:{server.presence_id()}"

    def to_user(self, user_id: str) -> list[tuple[str, str, bool]]:
        """(channel, event, for acknowledging sockets only) of each message sent to the user's room."""
        with self._lock:
            return [
                (channel, m.get("event"), bool(m.get("acknowledging_only")))
                for channel, m in self.messages
                if m.get("room") == f"user:{user_id}"
            ]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.pubsub.close()


class PostStream:
    """POSTs notifications to one user, round robin over `urls`, every `interval` s, in a thread.

    `.created` holds (notification id, status answered) of each POST that was answered 201.
    """

    def __init__(self, cluster: Cluster, urls: list[str], user_id: str, interval: float) -> None:
        self.cluster, self.urls, self.user_id, self.interval = cluster, urls, user_id, interval
        self.created: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PostStream":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(HTTP_TIMEOUT)

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            url = self.urls[count % len(self.urls)]
            count += 1
            try:
                response = self.cluster.post(url, [self.user_id], f"stream #{count}")
                if response.status_code == 201:
                    [notification] = response.json()["notifications"]
                    self.created.append((notification["id"], notification["status"]))
                else:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
            time.sleep(self.interval)

    def ids(self) -> set[str]:
        return {notification_id for notification_id, _status in self.created}
