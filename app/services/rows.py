"""Row-level SQL of the delivery protocol: the bulk INSERT, the claim, the requeue.

Each statement is built once (per dialect where conversion differs) and commits or
rolls back on its own, so callers see either the whole change or none of it.
"""

from datetime import datetime
from functools import lru_cache
from operator import attrgetter

from sqlalchemy import String, bindparam, insert, select, update

from app import metrics
from app.extensions import db
from app.models import RECORD_COLUMNS, Notification, NotificationRecord, utcnow
from app.protocol import NotificationStatus

_TABLE = Notification.__table__
CONFIRM_BATCH = 500  # ids per UPDATE ... IN (...)
_INSERT_NAMES = [f"raw_{column.key}" for column in RECORD_COLUMNS]
# Parameters typed as String, which converts nothing: the values go to the driver as they are.
_INSERT_CONVERTED = insert(_TABLE).values(
    {
        column.key: bindparam(name, type_=String())
        for column, name in zip(RECORD_COLUMNS, _INSERT_NAMES, strict=True)
    }
)
_HAS_PENDING = (
    select(_TABLE.c.id)
    .where(_TABLE.c.user_id == bindparam("user_id"), _TABLE.c.status == NotificationStatus.PENDING)
    .limit(1)
)


def insert(records: list[NotificationRecord]) -> None:
    """Write `records` with one INSERT (not committed), converting each distinct column value once.

    The rows of a fan-out share their message, status and timestamps; letting
    SQLAlchemy convert them row by row (timestamps to SQLite text, the status to
    its stored name) costs more than the INSERT itself at 10,000 rows.
    """
    processors = _bind_processors(db.session.get_bind().dialect)
    columns = [
        _converted(map(attrgetter(column.key), records), process)
        for column, process in zip(RECORD_COLUMNS, processors, strict=True)
    ]
    db.session.execute(
        _INSERT_CONVERTED, [dict(zip(_INSERT_NAMES, row, strict=True)) for row in zip(*columns, strict=True)]
    )


@lru_cache(maxsize=8)
def _bind_processors(dialect) -> list:
    # dialect_impl: the dialect's own type (SQLite's DATETIME writes its text format),
    # not the generic one, which would leave the value to the driver's adapter.
    return [column.type.dialect_impl(dialect).bind_processor(dialect) for column in RECORD_COLUMNS]


def _converted(values, process):
    """`values` through the column's bind processor, called once per distinct value."""
    if process is None:
        return values
    done: dict = {}

    def convert(value):
        # A fan-out's rows share one `data` dict: unhashable, so known by identity.
        key = id(value) if isinstance(value, dict) else value
        if key not in done:
            done[key] = process(value)
        return done[key]

    return map(convert, values)


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
        .returning(*RECORD_COLUMNS)
    )
    try:
        claimed = [NotificationRecord(*row) for row in db.session.execute(statement)]
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return claimed


def requeue_returning(*criteria) -> set[str]:
    """Put the DELIVERED rows matching `criteria` back to PENDING; their ids."""
    table = _TABLE
    statement = (
        update(table)
        .where(table.c.status == NotificationStatus.DELIVERED, *criteria)
        .values(status=NotificationStatus.PENDING, delivered_at=None, received_at=None)
        .returning(table.c.id)
    )
    try:
        ids = {row.id for row in db.session.execute(statement)}
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return ids


def requeue(*criteria) -> int:
    """Put the DELIVERED rows matching `criteria` back to PENDING; how many were."""
    table = _TABLE
    try:
        result = db.session.execute(
            update(table)
            .where(table.c.status == NotificationStatus.DELIVERED, *criteria)
            .values(status=NotificationStatus.PENDING, delivered_at=None)
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return result.rowcount


def has_pending(user_id: str) -> bool:
    """Whether the user has PENDING rows: a read, so most connects write nothing.

    Safe to skip the claim on "no": it runs after the socket counts as online, so a
    row committed afterwards is claimed by its creator's second presence read.
    """
    found = db.session.execute(_HAS_PENDING, {"user_id": user_id}).first()
    db.session.commit()  # end the read transaction, so the next read sees new rows
    return found is not None


def confirm(notification_ids: list[str]) -> int:
    """Stamp `received_at` on these notifications (those not stamped yet); how many were."""
    table = _TABLE
    confirmed = 0
    now = utcnow()
    try:
        for start in range(0, len(notification_ids), CONFIRM_BATCH):
            batch = notification_ids[start : start + CONFIRM_BATCH]
            result = db.session.execute(
                update(table)
                .where(table.c.id.in_(batch), table.c.received_at.is_(None))
                .values(received_at=now)
            )
            confirmed += result.rowcount
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return confirmed


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
    try:
        users = [row.user_id for row in db.session.execute(statement)]  # one per notification
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    metrics.REQUEUED_UNCONFIRMED.inc(len(users))
    return set(users)
