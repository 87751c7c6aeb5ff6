"""Shared fixtures: a fresh app and database per test, clients, tokens, sockets."""

import os
import uuid

import pytest
import redis

from app.extensions import socketio
from config import database_url
from tests.support.inprocess import app_token, fresh_app
from tests.support.services import PostgresDatabase, postgres_problem, redis_problem, redis_test_url
from tests.support.skips import skip_or_fail

TEST_DATABASE_URL = os.environ.get("DATABASE_URL", "")


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL database for this test run, when DATABASE_URL names one."""
    if not TEST_DATABASE_URL.startswith(("postgres://", "postgresql")):
        yield None
        return
    problem = postgres_problem(TEST_DATABASE_URL)
    if problem:
        skip_or_fail(problem)
    database = PostgresDatabase(TEST_DATABASE_URL).create()
    yield database_url(database.url)
    database.drop()


@pytest.fixture
def database_uri(tmp_path, postgres_url):
    """This test's database: a new SQLite file, or the run's PostgreSQL database."""
    return postgres_url or f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def app(request, database_uri):
    """A fresh app with empty tables; `@pytest.mark.config(KEY=value)` overrides settings."""
    marker = request.node.get_closest_marker("config")
    overrides = marker.kwargs if marker else {}
    with fresh_app(database_uri, **overrides) as app:
        yield app


@pytest.fixture
def client(app):
    """Flask test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """Runner for the app's `flask` commands."""
    return app.test_cli_runner()


@pytest.fixture
def token(app):
    """Factory: a signed access token for a user (admin with admin=True)."""

    def make(user_id: str, admin: bool = False, expires_in: int | None = None) -> str:
        return app_token(app, user_id, admin=admin, expires_in=expires_in)

    return make


@pytest.fixture
def auth_header(token):
    """Factory: the `Authorization` header of a user."""

    def make(user_id: str, admin: bool = False) -> dict:
        return {"Authorization": f"Bearer {token(user_id, admin=admin)}"}

    return make


@pytest.fixture
def socket_client(app, token):
    """Factory: a Socket.IO test client for a user, token in the header or the auth payload,
    plain or acknowledging (`ack=True`)."""
    clients = []

    def make(user_id: str | None = None, via: str = "header", raw_token: str | None = None, ack=False):
        value = raw_token if raw_token is not None else token(user_id)
        kind = {"ack": True} if ack else {}  # an acknowledging client (contract v2), else a plain one
        if via == "header":
            sc = socketio.test_client(app, headers={"Authorization": f"Bearer {value}"}, auth=kind or None)
        else:
            sc = socketio.test_client(app, auth={"token": value, **kind})
        clients.append(sc)
        return sc

    yield make
    for sc in clients:
        if sc.is_connected():
            sc.disconnect()


@pytest.fixture
def admin_post(client, auth_header):
    """Factory: POST /v1/admin/notifications as an admin; returns the response."""

    def post(user_ids, message="hello", data=None, **kwargs):
        body = {"userIds": user_ids, "message": message} | ({"data": data} if data is not None else {})
        return client.post(
            "/v1/admin/notifications",
            json=body,
            headers=auth_header("admin", admin=True),
            **kwargs,
        )

    return post


@pytest.fixture
def redis_url():
    """The test Redis server (database 15 by default), or skip/fail when it does not answer."""
    url = redis_test_url()
    problem = redis_problem(url)
    if problem:
        skip_or_fail(problem)
    return url


@pytest.fixture
def presence_prefix(redis_url):
    """A key prefix of this test's own, removed afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
