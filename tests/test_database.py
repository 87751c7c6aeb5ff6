"""The PostgreSQL connection pool: idle connections the server closed are replaced, and
self-contained statements run without a transaction of their own.

Each test uses a PostgreSQL database of its own (whatever DATABASE_URL says), so the
SQLite run of the suite checks it too.
"""

import threading
import time

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from app import PING_AFTER_IDLE, create_app
from app.extensions import db
from app.services import delivery, inbox, reads
from config import TestingConfig, database_url
from tests.support.inprocess import app_token
from tests.support.services import PostgresDatabase, postgres_problem, postgres_server_url
from tests.support.skips import skip_or_fail
from tests.support.statements import statements_sent


@pytest.fixture
def pg_app():
    problem = postgres_problem(postgres_server_url())
    if problem:
        skip_or_fail(problem)
    database = PostgresDatabase().create()
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=database_url(database.url))
    with app.app_context():
        db.create_all()
    yield app, database
    app.extensions["delivery"].confirmations.stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    database.drop()


def close_every_connection_from_the_server(database: PostgresDatabase) -> int:
    """What a PostgreSQL restart or an idle timeout does to the pool's connections."""
    return len(
        database.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )


def test_requests_after_the_server_closed_the_pooled_connections_succeed(pg_app):
    app, database = pg_app
    client = app.test_client()
    headers = {"Authorization": "Bearer " + app_token(app, "alice")}
    assert client.get("/v1/notifications", headers=headers).status_code == 200
    assert client.get("/v1/notifications/unread-count", headers=headers).status_code == 200
    assert close_every_connection_from_the_server(database) >= 1

    time.sleep(PING_AFTER_IDLE + 0.2)  # idle long enough to be tested on checkout

    for path in ("/v1/notifications", "/v1/notifications/unread-count", "/healthz"):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, (path, answer.get_json())


def test_a_read_on_a_connection_the_server_closed_fails_once_and_the_pool_replaces_it(pg_app):
    app, database = pg_app
    with app.app_context():
        assert reads.connect_state("bob") == (False, 0)
        assert close_every_connection_from_the_server(database) >= 1
        # used a moment ago, so not tested on checkout: the read finds it closed
        with pytest.raises(DBAPIError) as failed:
            reads.connect_state("bob")
        assert failed.value.connection_invalidated
        assert reads.unread_counts(["bob"]) == {"bob": 0}


def test_connect_state_reads_pending_and_unread_in_one_statement_without_a_transaction(pg_app):
    app, _database = pg_app
    with app.app_context():
        delivery.current().create(["bob", "bob", "carol"], "hello")
        with statements_sent() as sent:
            assert reads.connect_state("bob") == (True, 1)
            assert reads.connect_state("nobody") == (False, 0)
    # one round trip per connect: no BEGIN before it, no ROLLBACK after it
    assert sent == [("SELECT", True), ("SELECT", True)]


def test_a_send_waits_for_no_begin_or_commit_unless_it_stores_an_idempotency_key(pg_app):
    app, _database = pg_app
    with app.app_context():
        with statements_sent() as sent:
            delivery.fanout().to_users(["bob", "carol"], "hello")
        assert sent == [("INSERT", True)]  # the rows, less who muted the category
        with statements_sent() as sent:
            delivery.fanout().to_users(["bob"], "again", before_commit=lambda: None)
        assert sent == [("INSERT", False)]  # then COMMIT, outside any cursor
        assert inbox.unread_counts(["bob", "carol"]) == {"bob": 2, "carol": 1}


def test_bursts_of_concurrent_reads_reuse_the_pool_instead_of_opening_connections(pg_app):
    """A connection beyond the pool size is closed when returned: each burst would open them again."""
    app, _database = pg_app
    opened = []
    start = threading.Barrier(30)

    def read():
        start.wait()
        with app.app_context():
            for _ in range(5):
                reads.connect_state("bob")

    def burst():
        workers = [threading.Thread(target=read) for _ in range(30)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    with app.app_context():
        event.listen(db.engine, "connect", lambda *_: opened.append(1))
    burst()
    first = len(opened)
    assert 0 < first <= app.config["DB_POOL_SIZE"]
    burst()
    assert len(opened) == first  # the second burst found every connection it needed open
