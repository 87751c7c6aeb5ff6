"""One real server (`python wsgi.py`) with its own SQLite file, port and secret, and what tests ask of it."""

import os
import sqlite3
import subprocess
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path

import requests

from tests.support.logs import USER_DISCONNECTED, logged
from tests.support.server import ServerProcess, flask_command
from tests.support.tokens import bearer, mint_token, random_secret
from tests.support.waiting import ready_or_fail, wait_for
from tests.support.wire import ADMIN_ROUTE

HTTP_TIMEOUT = 10  # seconds, for every request that is expected to be answered at once


class LiveServer(ServerProcess):
    """A `python wsgi.py` process with its own SQLite file (in `workdir`), port and JWT secret."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.db_path = workdir / "e2e.db"
        self.db_url = f"sqlite:///{self.db_path}"
        self.secret = random_secret(48)
        env = dict(os.environ)
        env.pop("SOCKETIO_MESSAGE_QUEUE", None)
        env.pop("FLASK_RUN_FROM_CLI", None)
        env.update(DATABASE_URL=self.db_url, JWT_SECRET_KEY=self.secret, APP_ENV="development")
        super().__init__(env, workdir / "server.log")

    # ---- process control -------------------------------------------------

    def migrate(self) -> None:
        result = self.cli("db", "upgrade", check=False)
        assert result.returncode == 0, (
            f"`flask db upgrade` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )

    def start(self) -> "LiveServer":
        """Start the server (again, on the same port and database) and wait until it is healthy."""
        super().start()
        ready_or_fail(self)
        return self

    # ---- helpers for tests -----------------------------------------------

    def token(self, user_id: str, admin: bool = False) -> str:
        """An access token for `user_id`, signed with this server's secret."""
        return mint_token(self.secret, user_id, admin=admin)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `flask --app wsgi ARGS...` with this server's environment."""
        result = flask_command(self.env, *args)
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

    def statuses(self, ids) -> dict[str, str]:
        """{id: status} of the given notifications, read from the database."""
        ids = list(ids)
        marks = ",".join("?" * len(ids))
        return dict(self.rows(f"SELECT id, status FROM notifications WHERE id IN ({marks})", ids))

    def healthz(self) -> requests.Response:
        return requests.get(self.url + "/healthz", timeout=HTTP_TIMEOUT)

    def admin_post(self, user_ids, message, *, token=None, session=requests) -> requests.Response:
        """POST /v1/admin/notifications as an admin (or with `token`); the response, whatever its status."""
        return session.post(
            self.url + ADMIN_ROUTE,
            json={"userIds": user_ids, "message": message},
            headers=bearer(token or self.token("admin", admin=True)),
            timeout=HTTP_TIMEOUT,
        )

    def send(self, user_ids, message, session=requests) -> list[dict]:
        """POST /v1/admin/notifications as an admin, expecting 201: the notifications created."""
        response = self.admin_post(user_ids, message, session=session)
        assert response.status_code == 201, response.text
        return response.json()["notifications"]

    def list_notifications(self, user_id: str, token: str | None = None) -> requests.Response:
        """GET /v1/notifications as `user_id` (or with `token`)."""
        return requests.get(
            self.url + "/v1/notifications", headers=bearer(token or self.token(user_id)), timeout=HTTP_TIMEOUT
        )

    def wait_disconnected(self, sid: str) -> None:
        """Wait until the server has processed the disconnection of socket `sid` (it logs it)."""
        wait_for(
            lambda: logged(self.log(), USER_DISCONNECTED, None, sid),
            message=f"the server to log the disconnection of socket {sid}",
        )


@contextmanager
def running_live_server(env: dict | None = None):
    """A LiveServer on a freshly migrated database in a temporary folder, with `env` set as well;
    started, and stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        server = LiveServer(Path(tmp))
        server.env.update(env or {})
        server.migrate()
        try:
            server.start()
            yield server
        finally:
            server.stop()
