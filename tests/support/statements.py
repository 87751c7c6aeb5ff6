"""What the app sends to its database, seen from the driver (SQLAlchemy's events miss the
statements run on the driver's own connection)."""

import sqlite3
from contextlib import contextmanager

import psycopg2.extensions
from sqlalchemy import event

from app.extensions import db


@contextmanager
def statements_sent():
    """Within the block, (first word, whether the connection was in autocommit) per statement sent.

    SQLite reports the `BEGIN` and `COMMIT` its driver sends around a write as statements too;
    psycopg2 sends them outside any cursor, so there a transaction shows as autocommit False.
    Needs an app context; the engine's connections are dropped afterwards.
    """
    sent = []

    class Counting(psycopg2.extensions.cursor):
        def execute(self, query, params=None):
            sent.append((query.split(None, 1)[0].upper(), self.connection.autocommit))
            return super().execute(query, params)

    def counting(dbapi_connection, _record, _proxy):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(
                lambda sql: sent.append(
                    (sql.split(None, 1)[0].upper(), dbapi_connection.isolation_level is None)
                )
            )
        else:
            dbapi_connection.cursor_factory = Counting

    event.listen(db.engine.pool, "checkout", counting)
    try:
        yield sent
    finally:
        event.remove(db.engine.pool, "checkout", counting)
        db.engine.dispose()
