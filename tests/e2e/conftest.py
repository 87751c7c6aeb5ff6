"""Fixtures that run the real server (`python wsgi.py`) and real Socket.IO clients against it."""

import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import requests
import socketio

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15  # seconds for the server to answer /healthz
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL
CLI_TIMEOUT = 60
LOG_TAIL_LINES = 80
RECORDED_EVENTS = ("new_notification", "pending_notifications", "connect_error")

_reports = pytest.StashKey[dict]()


def wait_for(predicate, timeout: float = 10, message=""):
    """Poll `predicate` every 20 ms until it is truthy and return its value.

    Fails the test after `timeout` seconds; `message` (a string, or a callable
    that builds one at that moment) says what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = (message() if callable(message) else message) or getattr(
                predicate, "__name__", "condition"
            )
            pytest.fail(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.02)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_server(env: dict, log_path: Path) -> subprocess.Popen:
    """Start `python wsgi.py` from the repo root with `env`, appending its output to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "wsgi.py"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


class LiveServer:
    """A `python wsgi.py` process with its own SQLite file, port and JWT secret."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "e2e.db"
        self.db_url = f"sqlite:///{self.db_path}"
        self.log_path = workdir / "server.log"
        self.secret = secrets.token_urlsafe(36)  # 48 characters
        env = dict(os.environ)
        env.pop("SOCKETIO_MESSAGE_QUEUE", None)
        env.pop("FLASK_RUN_FROM_CLI", None)
        env.update(
            DATABASE_URL=self.db_url,
            HOST="127.0.0.1",
            PORT=str(self.port),
            JWT_SECRET_KEY=self.secret,
            APP_ENV="development",
        )
        self.env = env
        self.returncode: int | None = None
        self.killed = False
        self._process: subprocess.Popen | None = None
        self._signalled = False

    # ---- process control -------------------------------------------------

    def migrate(self) -> None:
        result = self.cli("db", "upgrade", check=False)
        assert result.returncode == 0, (
            f"`flask db upgrade` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )

    def start(self) -> None:
        """Start the server (again, on the same port and database) and wait until it is healthy."""
        assert self._process is None, "the server is already running"
        self._process = spawn_server(self.env, self.log_path)
        self._signalled = False
        self.returncode = None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                pytest.fail(f"the server exited with {code} while starting:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                self.stop()
                pytest.fail(
                    f"the server did not answer /healthz within {START_TIMEOUT} s:\n" + self.log_tail()
                )
            time.sleep(0.05)

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the running server (stop() then does not send another SIGTERM)."""
        assert self._process is not None, "the server is not running"
        self._process.send_signal(signum)
        self._signalled = self._signalled or signum == signal.SIGTERM

    def stop(self) -> int | None:
        """Stop the server: SIGTERM (unless already sent), SIGKILL after STOP_TIMEOUT s.

        Returns its exit code, or None when it had to be killed (also kept in
        `.returncode` and `.killed`).
        """
        process, self._process = self._process, None
        if process is None:
            return self.returncode
        if process.poll() is None and not self._signalled:
            process.send_signal(signal.SIGTERM)
        try:
            self.returncode = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            self.returncode = None
            self.killed = True
        return self.returncode

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ---- helpers for tests -----------------------------------------------

    def token(self, user_id: str, admin: bool = False) -> str:
        """An HS256 access token for `user_id`, signed with this server's secret."""
        now = datetime.now(UTC)
        claims = {"sub": user_id, "iat": now, "exp": now + timedelta(seconds=3600)}
        if admin:
            claims["role"] = "admin"
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `flask --app wsgi ARGS...` with this server's environment."""
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        if check and result.returncode != 0:
            error = subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
            error.add_note(f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
            raise error
        return result

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run a query on the server's SQLite file."""
        with closing(sqlite3.connect(self.db_path, timeout=10)) as conn:
            return conn.execute(sql, params).fetchall()

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _failed(request) -> bool:
    reports = request.node.stash.get(_reports, {})
    return any(report.failed for report in reports.values())


def server_env(request) -> dict[str, str]:
    """Extra environment variables for the test's server, from `@pytest.mark.server_env(NAME=value)`.

    Values are turned into strings; "" sets a variable to the empty string. Without
    the marker the server gets none.
    """
    marker = request.node.get_closest_marker("server_env")
    if marker is None:
        return {}
    if marker.args:
        raise TypeError("server_env takes keyword arguments only: @pytest.mark.server_env(NAME=value)")
    return {name: str(value) for name, value in marker.kwargs.items()}


@pytest.fixture
def live_server(request):
    """A freshly migrated database and a running server on a free port of 127.0.0.1.

    A test marked `@pytest.mark.server_env(NAME=value, ...)` gets a server with those
    environment variables set as well (see `server_env`).
    """
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        server = LiveServer(Path(tmp))
        server.env.update(server_env(request))
        server.migrate()
        try:
            server.start()
            yield server
        finally:
            server.stop()
            if _failed(request):
                print(f"---- server log ({server.log_path}), last {LOG_TAIL_LINES} lines ----")
                print(server.log_tail())
                if server.killed:
                    print(f"---- the server did not exit within {STOP_TIMEOUT} s of SIGTERM ----")


@pytest.fixture
def socket_client(live_server):
    """Make `socketio.Client`s that record what they receive; all are disconnected afterwards.

    Each client has `.new_notifications` (payloads of `new_notification`),
    `.pending_batches` (payloads of `pending_notifications`, one list per event),
    `.connect_errors` and `.events` (every event received, as `(name, payload)`, in order).
    On teardown the server is stopped first, while its sockets are idle, so that it
    closes them itself; then every client is disconnected.
    """
    clients: list[socketio.Client] = []

    def make(**kwargs) -> socketio.Client:
        client = socketio.Client(reconnection=False, **kwargs)
        client.new_notifications = []
        client.pending_batches = []
        client.connect_errors = []
        client.events = []
        lists = {
            "new_notification": client.new_notifications,
            "pending_notifications": client.pending_batches,
            "connect_error": client.connect_errors,
        }

        def recorder(name):
            def record(*args):
                payload = args[0] if len(args) == 1 else list(args)
                client.events.append((name, payload))
                lists[name].append(payload)

            return record

        for name in RECORDED_EVENTS:
            client.on(name, recorder(name))

        def record_other(name, *args):
            client.events.append((name, args[0] if len(args) == 1 else list(args)))

        client.on("*", record_other)
        clients.append(client)
        return client

    yield make
    live_server.stop()
    for client in clients:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - teardown must reach every client
            pass
