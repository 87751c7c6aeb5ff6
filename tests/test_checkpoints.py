"""SQLite checkpoints: the server's thread copies the log into the database file, a commit does not.

Each test has a SQLite file of its own, whatever DATABASE_URL says, so the PostgreSQL run
of the suite checks it too.
"""

import logging
import sqlite3

import pytest
from sqlalchemy import create_engine

from app.extensions import db
from app.records import new_records
from app.services import checkpoints
from app.services.store import NotificationStore
from tests.support.inprocess import fresh_app

ROWS = 20_000  # about 1,500 pages of log: past SQLite's own mark of 1,000, below the backstop


@pytest.fixture
def sqlite_app(tmp_path):
    path = tmp_path / "checkpoints.db"
    with fresh_app(f"sqlite:///{path}") as app, app.app_context():
        yield app, path


def _truncate_log(path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _send_to_many(prefix: str) -> None:
    users = [f"{prefix}-{i}" for i in range(ROWS)]
    NotificationStore().insert(new_records(users, set(), set(), message="many"))


def _stored(path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT count(*) FROM notifications").fetchone()[0]


def test_sqlite_files_are_checkpointed_and_nothing_else():
    assert checkpoints.database_file(create_engine("sqlite:////srv/n.db")) == "/srv/n.db"
    assert checkpoints.database_file(create_engine("sqlite://")) is None
    assert checkpoints.database_file(create_engine("sqlite:///:memory:")) is None
    postgres = create_engine("postgresql+psycopg2://u@127.0.0.1/n")  # never connects
    assert checkpoints.database_file(postgres) is None
    assert checkpoints.start(postgres, spawn=pytest.fail, sleep=pytest.fail) is None


def test_without_the_server_a_large_commit_checkpoints_itself(sqlite_app):
    """SQLite's default, which tests, `flask` commands and other tools keep."""
    _app, path = sqlite_app
    _truncate_log(path)
    before = path.stat().st_size

    _send_to_many("own")

    assert path.stat().st_size > before, "the commit past 1,000 pages copied the log itself"


def test_with_the_server_a_large_commit_leaves_the_copy_to_the_checkpointer(sqlite_app):
    _app, path = sqlite_app
    spawned = []
    checkpointer = checkpoints.start(db.engine, spawn=lambda *args: spawned.append(args), sleep=None)
    try:
        assert [args[0] for args in spawned] == [checkpoints._loop]
        _truncate_log(path)
        before = path.stat().st_size

        _send_to_many("left")

        assert path.stat().st_size == before, "the commit must not have run a checkpoint"
        assert _stored(path) == ROWS  # committed: in the log, which readers see
        busy, log_pages, copied = checkpointer.checkpoint()
        assert (busy, copied) == (0, log_pages) and log_pages > 1000
        assert path.stat().st_size > before
        _truncate_log(path)  # nothing was left in the log but what the checkpoint copied
        assert _stored(path) == ROWS
    finally:
        checkpointer.close()


def test_the_loop_logs_a_failing_checkpoint_once_and_its_recovery(caplog):
    outcomes = [sqlite3.OperationalError("disk I/O error")] * 3 + [(0, 5, 5)]

    class Flaky:
        def checkpoint(self):
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    class Stop(Exception):
        pass

    def sleep(_seconds):
        if not outcomes:
            raise Stop

    caplog.set_level(logging.INFO, logger=checkpoints.log.name)
    with pytest.raises(Stop):
        checkpoints._loop(Flaky(), sleep)

    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        f"sqlite checkpoint failed; commits checkpoint past {checkpoints.BACKSTOP_PAGES} pages",
        "sqlite checkpoints work again",
    ]
