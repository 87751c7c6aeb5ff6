"""Helpers for the multi-process tests: PostgreSQL, a private Redis, server processes and clients."""

import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import jwt
import psycopg2
import pytest
import redis
import requests
import socketio

from tests.conftest import skip_or_fail

from .conftest import REPO_ROOT, free_port, spawn_server, wait_for

log = logging.getLogger(__name__)

FIGURES_PATH = REPO_ROOT / "bench" / "results" / "cluster-figures.json"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

PRESENCE_TTL = 3  # seconds; short, so that a killed process stops counting quickly
START_TIMEOUT = 20  # seconds for a server to answer /healthz and register its presence
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL
HTTP_TIMEOUT = 30
CONNECT_TIMEOUT = 10
CLI_TIMEOUT = 60
LOG_TAIL_LINES = 60
REGISTERED = "presence: registered"
PRESENCE_PREFIX = "notifications:presence"  # the server's default key prefix (not overridden)


def unique(name: str) -> str:
    """A user id of this test alone, so rows of earlier tests in the same database never interfere."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def postgres_base_url() -> str:
    """The PostgreSQL server to use: DATABASE_URL if it names one, else TEST_POSTGRES_URL, else local."""
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        return database_url
    return os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class PostgresDatabase:
    """A database of its own on the PostgreSQL server, created empty and dropped afterwards."""

    def __init__(self, base_url: str | None = None):
        self.base_url = base_url or postgres_base_url()
        self.name = f"notifications_e2e_{uuid.uuid4().hex[:10]}"
        self.url = _with_database(self.base_url, self.name)
        self.created = False

    def _admin(self):
        conn = psycopg2.connect(self.base_url, connect_timeout=5)
        conn.autocommit = True
        return conn

    def create(self) -> None:
        parts = urlsplit(self.base_url)
        try:
            conn = self._admin()
        except psycopg2.Error as exc:
            conn, problem = None, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if conn is None:
            skip_or_fail(f"PostgreSQL at {parts.hostname}:{parts.port or 5432} does not answer: {problem}")
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            conn.close()
        self.created = True

    def drop(self) -> None:
        if not self.created:
            return
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            conn.close()
        self.created = False

    def connect(self):
        """A new psycopg2 connection to this database (the caller closes it)."""
        return psycopg2.connect(self.url, connect_timeout=5)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def statuses(self, ids) -> dict[str, str]:
        """Notification id -> stored status, for the given ids."""
        ids = list(ids)
        if not ids:
            return {}
        return dict(self.rows("SELECT id, status FROM notifications WHERE id = ANY(%s)", (ids,)))


class TableLock:
    """`LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE`, held in a transaction of its own."""

    def __init__(self, database: PostgresDatabase, table: str = "notifications"):
        self.database = database
        self.table = table
        self.conn = None

    def acquire(self) -> "TableLock":
        self.conn = self.database.connect()
        with self.conn.cursor() as cur:
            cur.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
        return self

    def release(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    def waiters(self) -> int:
        """How many other sessions wait for a lock on the table right now."""
        rows = self.database.rows(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            (self.table,),
        )
        return rows[0][0]

    def __enter__(self) -> "TableLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class RedisServer:
    """A private `redis-server` on a free port of 127.0.0.1, without persistence."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @staticmethod
    def require() -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail("redis-server is not installed (it is not on PATH)")
        return binary

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        assert self.process is None or self.process.poll() is not None, "redis-server is already running"
        binary = self.require()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.workdir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            lambda: self.process.poll() is not None or self.ping(),
            timeout=START_TIMEOUT,
            message=f"redis-server on port {self.port} to answer PING",
        )
        if self.process.poll() is not None:
            pytest.fail(f"redis-server exited with {self.process.returncode}:\n{self.log_tail()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def shutdown(self) -> None:
        """`redis-cli -p P shutdown nosave`, then wait until the process is gone."""
        cli = shutil.which("redis-cli")
        if cli:
            subprocess.run(
                [cli, "-p", str(self.port), "shutdown", "nosave"],
                capture_output=True,
                timeout=STOP_TIMEOUT,
                check=False,
            )
        else:
            try:
                self.client().shutdown(nosave=True)
            except redis.RedisError:
                pass  # the connection drops as it stops
        if self.process is not None:
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.running:
            self.shutdown()
        self.process = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class ServerProcess:
    """One `python wsgi.py` process of the cluster, logging to a file of its own."""

    def __init__(self, name: str, env: dict, workdir: Path, port: int | None = None, shared: bool = True):
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "PORT": str(self.port)}
        self.log_path = workdir / f"server-{name}.log"
        self.shared = shared  # registers its presence in Redis (a message queue is configured)
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    def __repr__(self) -> str:
        return f"<server {self.name} :{self.port}>"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "ServerProcess":
        """Start the process; `wait_ready()` waits until it serves."""
        assert not self.running, f"{self} is already running"
        self._start_offset = self.log_size()
        self.process = spawn_server(self.env, self.log_path)
        self.returncode = None
        return self

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self) -> "ServerProcess":
        """Wait for /healthz 200 and, with Redis presence, for the first heartbeat's registration."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                self.returncode = self.process.returncode
                pytest.fail(f"{self} exited with {self.returncode} while starting:\n{self.log_tail()}")
            if self._healthy() and (not self.shared or REGISTERED in self.log_since(self._start_offset)):
                return self
            if time.monotonic() >= deadline:
                self.stop()
                pytest.fail(
                    f"{self} did not answer /healthz and register its presence within "
                    f"{START_TIMEOUT} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.process is not None, f"{self} is not running"
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing is cleaned up."""
        self.signal(signal.SIGKILL)
        self.returncode = self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        if self.process is None:
            return self.returncode
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.process = None
        return self.returncode

    def stop(self) -> int | None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT s; the exit code (None when it had to be killed)."""
        process = self.process
        if process is None:
            return self.returncode
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            self.returncode = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            self.returncode = None
            log.error("%s was still running %s s after SIGTERM: killed", self, STOP_TIMEOUT)
        self.process = None
        return self.returncode

    # ---- log ---------------------------------------------------------------

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_since().splitlines()[-lines:])

    def presence_id(self) -> str:
        """The id under which this process last registered its sockets in Redis."""
        ids = re.findall(r"presence: registered .* as process (\w+)", self.log_since())
        assert ids, f"{self} never registered its presence:\n{self.log_tail()}"
        return ids[-1]

    def connected_log_line(self, user_id: str) -> bool:
        return f"user {user_id} connected (sid" in self.log_since()

    def wait_log(self, text: str, since: int = 0, timeout: float = 15) -> str:
        return wait_for(
            lambda: text in self.log_since(since),
            timeout=timeout,
            message=lambda: f"{text!r} in the log of {self}:\n{self.log_tail(20)}",
        )


class Client:
    """A python-socketio client recording what it receives, by notification id."""

    def __init__(self, user_id: str, name: str = ""):
        self.user_id = user_id
        self.name = name or user_id
        self.sio = socketio.Client(reconnection=False)
        self.new: list[dict] = []  # `new_notification` payloads
        self.pending: list[list[dict]] = []  # `pending_notifications` batches
        self.connect_errors: list = []
        self.counts: Counter[str] = Counter()  # notification id -> times received (either event)
        self.disconnected = threading.Event()
        # While set to an unset Event, `new_notification` handlers wait for it before
        # returning, which is when python-socketio sends the acknowledgement.
        self.ack_gate: threading.Event | None = None
        self._lock = threading.Lock()
        self.sio.on("new_notification", self._on_new)
        self.sio.on("pending_notifications", self._on_pending)
        self.sio.on("connect_error", self.connect_errors.append)
        self.sio.on("disconnect", self._on_disconnect)

    def _on_new(self, payload):
        with self._lock:
            self.new.append(payload)
            self.counts[payload["id"]] += 1
        gate = self.ack_gate
        if gate is not None:
            gate.wait(CONNECT_TIMEOUT * 3)

    def _on_pending(self, payload):
        with self._lock:
            self.pending.append(payload)
            for notification in payload:
                self.counts[notification["id"]] += 1

    def _on_disconnect(self, *_args):
        self.disconnected.set()

    def connect(self, url: str, token: str, transports=("websocket",), headers=None) -> "Client":
        self.sio.connect(
            url,
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
            transports=list(transports) if transports else None,
            wait_timeout=CONNECT_TIMEOUT,
        )
        return self

    @property
    def connected(self) -> bool:
        return self.sio.connected

    def got(self, notification_id: str) -> bool:
        return self.counts[notification_id] > 0

    def new_ids(self) -> set[str]:
        with self._lock:
            return {n["id"] for n in self.new}

    def pending_ids(self) -> set[str]:
        with self._lock:
            return {n["id"] for batch in self.pending for n in batch}

    def disconnect(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass


class Cluster:
    """PostgreSQL database, optional private Redis, and server processes sharing one secret."""

    def __init__(self, workdir: Path, with_redis: bool = True):
        self.workdir = workdir
        self.database = PostgresDatabase()
        self.redis = RedisServer(workdir) if with_redis else None
        self.secret = secrets.token_urlsafe(36)  # 48 characters
        self.servers: dict[str, ServerProcess] = {}
        self.clients: list[Client] = []

    # ---- life cycle ----------------------------------------------------------

    def setup(self) -> None:
        if self.redis is not None:
            RedisServer.require()
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

    def cli(self, *args: str, port: int | None = None) -> subprocess.CompletedProcess:
        """`python -m flask --app wsgi ARGS...` with the servers' environment."""
        env = self.env()
        if port is not None:
            env["PORT"] = str(port)
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )

    def add_servers(self, *names: str, ports: dict | None = None) -> list[ServerProcess]:
        """Start one process per name, in parallel, and wait until each serves."""
        started = []
        for name in names:
            server = ServerProcess(
                name, self.env(), self.workdir, port=(ports or {}).get(name), shared=self.redis is not None
            )
            self.servers[name] = server
            started.append(server.start())
        for server in started:
            server.wait_ready()
        return started

    def ensure_running(self) -> None:
        """Bring back what an earlier test stopped: Redis, then every stopped server."""
        if self.redis is not None and not self.redis.running:
            self.redis.start()
        stopped = [server.start() for server in self.servers.values() if not server.running]
        for server in stopped:
            server.wait_ready()

    def teardown(self) -> None:
        self.disconnect_clients()
        for server in self.servers.values():
            server.stop()
        if self.redis is not None:
            self.redis.stop()
        self.database.drop()

    # ---- helpers for tests -----------------------------------------------------

    def token(self, user_id: str, admin: bool = False) -> str:
        now = datetime.now(UTC)
        claims = {"sub": user_id, "iat": now, "exp": now + timedelta(hours=1)}
        if admin:
            claims["role"] = "admin"
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def post(self, base_url: str, user_ids, message: str) -> requests.Response:
        """POST /v1/admin/notifications as an admin to the server (or proxy) at `base_url`."""
        return requests.post(
            base_url + "/v1/admin/notifications",
            json={"userIds": list(user_ids), "message": message},
            headers={"Authorization": f"Bearer {self.token('ops', admin=True)}"},
            timeout=HTTP_TIMEOUT,
        )

    def send(self, base_url: str, user_ids, message: str) -> dict[str, dict]:
        """POST and expect 201: user id -> the notification object the server answered."""
        response = self.post(base_url, user_ids, message)
        assert response.status_code == 201, f"{response.status_code} {response.text}"
        return {n["userId"]: n for n in response.json()["notifications"]}

    def connect(
        self, server_or_url, user_id: str, transports=("websocket",), name: str = "", headers=None
    ) -> Client:
        """A recording client of `user_id`, connected to a server (or a proxy's URL)."""
        url = server_or_url.url if isinstance(server_or_url, ServerProcess) else server_or_url
        client = Client(user_id, name)
        self.clients.append(client)
        return client.connect(url, self.token(user_id), transports=transports, headers=headers)

    def disconnect_clients(self) -> None:
        clients, self.clients = self.clients, []
        for client in clients:
            client.disconnect()

    def log_tails(self) -> str:
        parts = [
            f"---- {server} log ({server.log_path}) ----\n{server.log_tail()}"
            for server in self.servers.values()
        ]
        if self.redis is not None:
            parts.append(f"---- redis-server :{self.redis.port} ----\n{self.redis.log_tail(15)}")
        return "\n".join(parts)


def new_cluster(tmp_path_factory, with_redis: bool = True) -> Cluster:
    return Cluster(tmp_path_factory.mktemp("cluster"), with_redis=with_redis)


@contextmanager
def running_cluster(tmp_path_factory, *names: str, with_redis: bool = True):
    """A cluster with server processes `names`, torn down afterwards (for module fixtures)."""
    cluster = new_cluster(tmp_path_factory, with_redis=with_redis)
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


def port_refuses(port: int) -> bool:
    """True when a TCP connect to 127.0.0.1:port is refused (nothing listens)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def in_background(work) -> dict:
    """Run `work()` in a thread; the returned dict gets "result" or "error", and "thread"."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = work()
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    outcome["thread"] = thread
    thread.start()
    return outcome


def record_figures(group: str, figures: dict) -> None:
    """Keep measured figures in bench/results/cluster-figures.json (one entry per group) and log them."""
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(FIGURES_PATH.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    data[group] = {**figures, "recordedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    tmp = FIGURES_PATH.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(FIGURES_PATH)
    log.info("figures %s: %s", group, json.dumps(figures, sort_keys=True))
