"""Row-level SQL of the delivery protocol: the bulk INSERT, the claim, the requeue.

Each statement is built once (per dialect where conversion differs) and commits or
rolls back on its own, so callers see either the whole change or none of it.

A change made by one statement runs in autocommit (`one_statement`): the statement is
atomic by itself, and on PostgreSQL psycopg2 otherwise sends BEGIN and COMMIT as two
more round trips around it.
"""

import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache

import orjson
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from app import metrics
from app.extensions import db
from app.models import RECORD_COLUMNS, Notification, NotificationRecord, utcnow
from app.protocol import NotificationStatus
from app.services import bulk

_TABLE = Notification.__table__
CONFIRM_BATCH = 500  # ids per UPDATE ... IN (...)
_RECEIVED_AT = RECORD_COLUMNS.index(_TABLE.c.received_at)


@contextmanager
def one_statement():
    """A connection for one self-contained statement, in autocommit, returned to the pool after.

    The driver's own autocommit, a flag of the client: SQLAlchemy's AUTOCOMMIT isolation
    level had psycopg2 send `SET default_transaction_isolation` as the connection went out
    and again as it came back, the two round trips that autocommit was to save.
    """
    with db.engine.connect() as connection:
        undo = driver_autocommit(connection.connection.dbapi_connection)
        try:
            yield connection
        finally:
            if not connection.invalidated:
                _reset(undo, connection.invalidate)


@contextmanager
def driver_cursor(writes: bool = False):
    """A cursor of a pooled connection of the driver itself, for fixed SQL in the driver's style.

    SQLAlchemy's `Connection` around a statement cost as much again as the statement (a
    connect's state in-process: 34.6 against 16.5 µs on SQLite, 494 against 282 µs on
    PostgreSQL). In autocommit on PostgreSQL (no BEGIN and ROLLBACK round trips around a
    read), and on SQLite when the cursor `writes` (its driver starts no transaction for a
    read). Fails as SQLAlchemy would: a `DBAPIError`; and a connection the database dropped,
    or one stopped mid-statement (a timeout, an exit), is not put back in the pool.
    """
    engine = db.engine
    dialect = engine.dialect
    pooled = engine.raw_connection()
    driver, cursor, undo = pooled.dbapi_connection, None, None
    try:
        if writes or dialect.name != "sqlite":
            undo = driver_autocommit(driver)
        cursor = driver.cursor()
        yield cursor
    except dialect.loaded_dbapi.Error as exc:
        dropped = dialect.is_disconnect(exc, driver, cursor)
        if dropped:
            pooled.invalidate(exc)
        raise DBAPIError.instance(
            None, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=dropped
        ) from exc
    except BaseException as exc:
        if not isinstance(exc, Exception):  # stopped mid-statement: the connection's state is unknown
            pooled.invalidate(exc)
        raise
    finally:
        _release(pooled, cursor, undo)


def _release(pooled, cursor, undo) -> None:
    """Back to the pool as it came out of it, or thrown away when it cannot be."""
    if not pooled.is_valid:  # invalidated: out of the pool already
        return

    def reset() -> None:
        if cursor is not None:
            cursor.close()
        if undo is not None:
            undo()

    if _reset(reset, pooled.invalidate):
        pooled.close()


def _reset(undo: Callable[[], None], invalidate: Callable[[Exception], None]) -> bool:
    """Undo what was changed on a connection (autocommit back off); whether that went: one that
    cannot be reset is thrown away, never returned to the pool in autocommit (a later
    transaction would commit statement by statement)."""
    try:
        undo()
    except Exception as exc:  # noqa: BLE001
        invalidate(exc)
        return False
    return True


def driver_autocommit(driver) -> Callable[[], None]:
    """Switch a driver's connection to autocommit (nothing is sent to the database); returns the undo."""
    name, on = ("isolation_level", None) if isinstance(driver, sqlite3.Connection) else ("autocommit", True)
    previous = getattr(driver, name)
    setattr(driver, name, on)
    return lambda: setattr(driver, name, previous)


def insert(records: list[NotificationRecord]) -> list[NotificationRecord]:
    """Write `records` with one INSERT in the session's transaction (not committed), converting
    each distinct column value once; the records written: not those whose user muted their
    category (bulk.py).

    The rows of a fan-out share their message, status and timestamps; letting
    SQLAlchemy convert them row by row (timestamps to SQLite text, the status to
    its stored name) costs more than the INSERT itself at 10,000 rows. One statement
    whatever the number of rows (bulk.py): SQLAlchemy's executemany sends 10,000 rows to
    PostgreSQL as ten INSERTs of 1,000 VALUES each, and SQLite's driver binds every value
    of every row on its own (bench/README.md).
    """
    dialect = db.session.get_bind().dialect
    statement, params = bulk.insert_notifications(records, dialect, _bind_processors(dialect))
    count = db.session.execute(statement, params).rowcount
    return _written(records, count, dialect.name, db.session.connection().exec_driver_sql)


def insert_alone(records: list[NotificationRecord]) -> list[NotificationRecord]:
    """`insert`, alone in autocommit on the driver's connection: stored when it returns, nothing on failure.

    The statement is atomic by itself; in a transaction of its own PostgreSQL would wait
    for BEGIN and COMMIT as two more round trips.
    """
    dialect = db.engine.dialect
    sql, params = bulk.insert_notifications(records, dialect, _bind_processors(dialect), driver=True)
    with driver_cursor(writes=True) as cursor:

        def read(sql: str, params: dict) -> list[tuple]:
            cursor.execute(sql, params)
            return cursor.fetchall()

        cursor.execute(sql, params)
        return _written(records, cursor.rowcount, dialect.name, read)


def _written(
    records: list[NotificationRecord], count: int, dialect_name: str, read
) -> list[NotificationRecord]:
    """The `records` an INSERT of them that wrote `count` rows stored: all of them when it wrote as
    many (no user muted the category, the usual case), else those whose id `read(sql, params)`
    (the driver's SQL, on the INSERT's connection) finds stored."""
    if count == len(records):
        return records
    if count == 0:
        return []
    ids = orjson.dumps([n.id for n in records]).decode()
    found = {notification_id for (notification_id,) in read(_stored_ids_sql(dialect_name), {"ids": ids})}
    return [n for n in records if n.id in found]


def _stored_ids_sql(dialect_name: str) -> str:
    return f"SELECT id FROM {_TABLE.name} WHERE id {in_json_list('ids', dialect_name)}"


@lru_cache(maxsize=8)
def _bind_processors(dialect) -> list:
    # dialect_impl: the dialect's own type (SQLite's DATETIME writes its text format),
    # not the generic one, which would leave the value to the driver's adapter.
    return [column.type.dialect_impl(dialect).bind_processor(dialect) for column in RECORD_COLUMNS]


def claim(*criteria, received: bool = False) -> list[NotificationRecord]:
    """Mark the PENDING rows matching `criteria` DELIVERED; exactly the rows this call changed.

    `received`: they go to a plain client, so they count as received as they are sent.
    """
    table = _TABLE
    now = utcnow()
    values = {"status": NotificationStatus.DELIVERED, "delivered_at": now}
    if received:
        values["received_at"] = now
    statement = (
        update(table)
        .where(table.c.status == NotificationStatus.PENDING, *criteria)
        .values(**values)
        .returning(*bulk.RAW_RECORD_COLUMNS)
    )
    with one_statement() as connection:
        return bulk.records(connection.execute(statement).all(), connection.dialect)


def requeue(*criteria) -> set[str]:
    """Put the DELIVERED rows matching `criteria` back to PENDING (not delivered, not received); their ids."""
    table = _TABLE
    statement = (
        update(table)
        .where(table.c.status == NotificationStatus.DELIVERED, *criteria)
        .values(status=NotificationStatus.PENDING, delivered_at=None, received_at=None)
        .returning(table.c.id)
    )
    with one_statement() as connection:
        return {row.id for row in connection.execute(statement)}


def confirm(notification_ids: list[str]) -> int:
    """Stamp `received_at` on these notifications (those not stamped yet); how many were.

    Each batch is a statement of its own: a failure half-way leaves the first batches
    stamped, which is true, and a retry stamps the rest. Fixed SQL with the ids as one JSON
    parameter: SQLAlchemy rendered an `IN` of 500 binds at every flush, which follows every
    send to a plain client, e.g. 1,000 pending ones on connect.
    """
    confirmed = 0
    with one_statement() as connection:
        dialect = connection.dialect
        sql = _confirm_sql(dialect.name)
        at = _bind_processors(dialect)[_RECEIVED_AT](utcnow())
        for start in range(0, len(notification_ids), CONFIRM_BATCH):
            ids = orjson.dumps(notification_ids[start : start + CONFIRM_BATCH]).decode()
            confirmed += connection.exec_driver_sql(sql, {"at": at, "ids": ids}).rowcount
    return confirmed


def _confirm_sql(dialect_name: str) -> str:
    """The driver's SQL (psycopg2's %(name)s, sqlite3's :name), ids expanded from the JSON list."""
    at = "%(at)s" if dialect_name == "postgresql" else ":at"
    return (
        f"UPDATE {_TABLE.name} SET received_at = {at} "
        f"WHERE id {in_json_list('ids', dialect_name)} AND received_at IS NULL"
    )


def in_json_list(name: str, dialect_name: str) -> str:
    """SQL for "is in the JSON array of text bound as `name`", in the driver's placeholder style.

    One parameter whatever the number of values, so the statement's text never changes. On
    PostgreSQL JSON rather than a list: psycopg2 would send ARRAY['..', ...], one literal per
    value for PostgreSQL to parse (several times the JSON's cost at a thousand values).
    """
    if dialect_name == "postgresql":
        return f"= ANY(ARRAY(SELECT json_array_elements_text(CAST(%({name})s AS json))))"
    return f"IN (SELECT value FROM json_each(:{name}))"


def requeue_unconfirmed(sent_before: datetime) -> set[str]:
    """Put back to PENDING what was sent before `sent_before` and never confirmed; their users."""
    table = _TABLE
    statement = (
        update(table)
        .where(
            table.c.status == NotificationStatus.DELIVERED,
            table.c.received_at.is_(None),
            table.c.delivered_at < sent_before,
        )
        .values(status=NotificationStatus.PENDING, delivered_at=None)
        .returning(table.c.user_id)
    )
    with one_statement() as connection:
        users = [row.user_id for row in connection.execute(statement)]  # one per notification
    metrics.REQUEUED_UNCONFIRMED.inc(len(users))
    return set(users)
