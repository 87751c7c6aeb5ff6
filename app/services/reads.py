"""The reads every send and connect makes, as fixed SQL for each database: unread counts, a
connecting user's state.

They run on every POST and every connect. Through the ORM and SQLAlchemy's statement cache they cost several
times what the database spends on them; a fixed SQL string handed to the driver costs the
round trip. The list of users is one parameter (a JSON array), so each statement's text
never changes and the database plans it from its cache.

Each runs on a pooled connection of the driver itself (`rows.driver_cursor`).
"""

from functools import lru_cache

import orjson

from app.extensions import db
from app.models import UNREAD, Notification
from app.services.rows import driver_cursor, in_json_list

BATCH = 10_000  # users per read: a whole POST (at most 10,000 users) in one
_TABLE = Notification.__tablename__

# One round trip: has the user PENDING rows, and how many unread ones (both ranges of
# ix_notifications_user_status_created).
_CONNECT_STATE = (
    f"SELECT EXISTS (SELECT 1 FROM {_TABLE} WHERE user_id = {{user}} AND status = 'PENDING'), "
    f"(SELECT count(*) FROM {_TABLE} WHERE user_id = {{user}} AND {UNREAD})"
)
_UNREAD_COUNTS = (
    f"SELECT user_id, count(*) FROM {Notification.__tablename__} "
    f"WHERE user_id {{users}} AND {UNREAD} GROUP BY user_id"
)


def unread_counts(user_ids: list[str]) -> dict[str, int]:
    """How many rows of each of `user_ids` are not READ (ix_notifications_user_status_created)."""
    counts = dict.fromkeys(user_ids, 0)
    for rows in _driver_read(_UNREAD_COUNTS, [{"users": batch} for batch in _batches(user_ids)]):
        counts.update(rows)
    return counts


def connect_state(user_id: str) -> tuple[bool, int]:
    """(whether the user has PENDING rows, how many are unread): one read, so most connects write nothing.

    Safe to skip the claim on "no": it runs after the socket counts as online, so a
    row committed afterwards is claimed by its creator's second presence read.
    """
    ((has_pending, unread),) = _driver_read(_CONNECT_STATE, [{"user": user_id}])[0]
    return bool(has_pending), unread


def _driver_read(template: str, params: list[dict]) -> list[list[tuple]]:
    """The rows of `template` for each of `params`, read with one cursor (`rows.driver_cursor`)."""
    sql = _in_dialect(template, db.engine.dialect.name)
    with driver_cursor() as cursor:
        found = []
        for values in params:
            cursor.execute(sql, values)
            found.append(cursor.fetchall())
        return found


def _batches(user_ids: list[str]):
    for start in range(0, len(user_ids), BATCH):
        batch = user_ids[start : start + BATCH]
        yield orjson.dumps(batch).decode()


@lru_cache(maxsize=8)
def _in_dialect(template: str, dialect: str) -> str:
    """`template` with the driver's placeholders: psycopg2's %(name)s, sqlite3's :name."""
    if dialect == "postgresql":
        return template.format(users=in_json_list("users", dialect), user="%(user)s")
    return template.format(users=in_json_list("users", dialect), user=":user")
