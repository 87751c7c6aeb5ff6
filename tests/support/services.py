"""PostgreSQL and Redis for tests and the bench: where they are, whether they answer, throw-away databases.

DEFAULT_POSTGRES_URL is the one default PostgreSQL server (scripts/test.sh reads it from here).
"""

import os
import re
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import redis

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379"
TEST_REDIS_DB = 15  # the database number the tests use on the local Redis
SERVICE_TIMEOUT = 5  # seconds for a PostgreSQL or Redis connection


def postgres_server_url() -> str:
    """The PostgreSQL server to create test databases on: TEST_POSTGRES_URL, else the local default."""
    return os.environ.get("TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def redis_test_url() -> str:
    """The Redis database tests use: TEST_REDIS_URL, else database 15 of the local server."""
    return os.environ.get("TEST_REDIS_URL") or f"{LOCAL_REDIS_URL}/{TEST_REDIS_DB}"


def libpq_url(url: str) -> str:
    """`url` as psycopg2 takes it: an SQLAlchemy driver suffix (`+psycopg2`) left out."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def with_database(url: str, name: str) -> str:
    """The same server URL, naming database `name`."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL at `url` cannot be used, or None when it answers."""
    try:
        psycopg2.connect(libpq_url(url), connect_timeout=SERVICE_TIMEOUT).close()
    except psycopg2.Error as exc:
        parts = urlsplit(url)
        return f"PostgreSQL at {parts.hostname}:{parts.port or 5432} does not answer: {_first_line(exc)}"
    return None


def redis_problem(url: str) -> str | None:
    """Why Redis at `url` cannot be used, or None when it answers PING."""
    try:
        redis.Redis.from_url(
            url, socket_connect_timeout=SERVICE_TIMEOUT, socket_timeout=SERVICE_TIMEOUT
        ).ping()
    except redis.RedisError as exc:
        return f"Redis at {url} does not answer: {exc}"
    return None


class PostgresDatabase:
    """A database of its own on a PostgreSQL server, created empty and dropped afterwards."""

    def __init__(self, server_url: str | None = None, prefix: str = "notifications_test"):
        self.server_url = libpq_url(server_url or postgres_server_url())
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.url = with_database(self.server_url, self.name)
        self.created = False

    def _admin(self):
        conn = psycopg2.connect(self.server_url, connect_timeout=SERVICE_TIMEOUT)
        conn.autocommit = True
        return conn

    def _execute_as_admin(self, sql: str) -> None:
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create(self) -> "PostgresDatabase":
        self._execute_as_admin(f'CREATE DATABASE "{self.name}"')
        self.created = True
        return self

    def drop(self) -> None:
        if self.created:
            self._execute_as_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False

    def connect(self):
        """A new psycopg2 connection to this database (the caller closes it)."""
        return psycopg2.connect(self.url, connect_timeout=SERVICE_TIMEOUT)

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
