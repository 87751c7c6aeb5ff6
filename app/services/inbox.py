"""A user's inbox: list (cursor pages), unread count, mark read, read all, delete.

Only ever the user's own rows. Every change is sent to every socket of the user, on
any process (the user's room): the changed notification or its id, then the new
unread count, so that all of the user's devices stay in step.
"""

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, or_, select, text, update

from app.errors import DomainError, NotFoundError
from app.extensions import db
from app.models import OTHER_CATEGORY, UNREAD, Notification, utcnow
from app.protocol import (
    DEFAULT_CATEGORY,
    NOTIFICATION_DELETED,
    NOTIFICATION_UPDATED,
    NOTIFICATIONS_READ_ALL,
    NotificationStatus,
)
from app.schemas import notification_to_wire, utc_iso
from app.services import delivery, reads

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(notification: Notification) -> str:
    """The position just after `notification` in newest-first order (schemas.CURSOR_PATTERN)."""
    since_epoch = notification.created_at - EPOCH
    micros = (since_epoch.days * 86_400 + since_epoch.seconds) * 1_000_000 + since_epoch.microseconds
    return f"{micros}-{uuid.UUID(notification.id).hex}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    micros, _, hex_id = cursor.partition("-")
    try:
        return EPOCH + timedelta(microseconds=int(micros)), str(uuid.UUID(hex=hex_id))
    except (ValueError, OverflowError) as exc:  # the schema's pattern lets none through
        raise DomainError("The cursor is not valid; use the Link header as given.") from exc


def list_notifications(
    user_id: str,
    limit: int,
    status: NotificationStatus | None = None,
    cursor: str | None = None,
    category: str | None = None,
) -> tuple[list[Notification], str | None]:
    """A page of the user's notifications, newest first, and the cursor of the next page."""
    query = select(Notification).where(Notification.user_id == user_id)
    if status is not None:
        query = query.where(Notification.status == status)
    if category is not None:
        query = query.where(Notification.category == category)
        if category != DEFAULT_CATEGORY and db.session.get_bind().dialect.name == "sqlite":
            # The partial index's own term, which SQLite needs to read it (models.OTHER_CATEGORY).
            # Not for PostgreSQL: it proves the index's WHERE from `category = 'x'` alone, and
            # would take the two terms as independent, expect a tiny fraction of the rows, and
            # sort them all instead of reading the first page in index order.
            query = query.where(text(OTHER_CATEGORY))
    if cursor:
        created_at, notification_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Notification.created_at < created_at,
                and_(Notification.created_at == created_at, Notification.id < notification_id),
            )
        )
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit + 1)
    rows = list(db.session.scalars(query))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


def _owned(user_id: str, notification_id: str) -> Notification:
    """The user's notification, or NotFoundError (also for someone else's or a malformed id)."""
    try:
        uuid.UUID(notification_id)
    except ValueError:
        raise NotFoundError("No such notification.") from None
    notification = db.session.scalar(
        select(Notification).where(Notification.id == notification_id, Notification.user_id == user_id)
    )
    if notification is None:
        raise NotFoundError("No such notification.")
    return notification


def unread_count(user_id: str) -> int:
    """How many of the user's notifications are not READ."""
    return reads.unread_counts([user_id])[user_id]


def unread_counts(user_ids: Iterable[str]) -> dict[str, int]:
    """`unread_count` of several users in one query."""
    return reads.unread_counts(sorted(set(user_ids)))


def _tell(user_id: str, event: str, payload: dict) -> None:
    """The change, then the new unread count, to every socket of the user (through the delivery core)."""
    delivery.current().tell_user(user_id, event, payload)


def _read_at(now: datetime) -> dict:
    """The columns of a notification read at `now`: read through the REST API before any
    socket got it, it reached the user all the same."""
    return {
        Notification.status: NotificationStatus.READ,
        Notification.read_at: now,
        Notification.delivered_at: func.coalesce(Notification.delivered_at, now),
        Notification.received_at: func.coalesce(Notification.received_at, now),
    }


def mark_read(user_id: str, notification_id: str) -> Notification:
    """Mark one of the user's notifications READ; repeating it changes nothing (and sends nothing)."""
    notification = _owned(user_id, notification_id)
    if notification.status is not NotificationStatus.READ:
        now = utcnow()
        # Conditional, so two concurrent calls cannot both stamp a `readAt`.
        changed = db.session.execute(
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.status != NotificationStatus.READ,
            )
            .values(_read_at(now))
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
        db.session.refresh(notification)
        if changed:
            _tell(user_id, NOTIFICATION_UPDATED, notification_to_wire(notification))
    return notification


def read_all(user_id: str) -> tuple[int, datetime]:
    """Mark every unread notification of the user READ with one `readAt`, in one UPDATE.

    Returns how many it changed and that `readAt`; a repeat changes 0.
    """
    now = utcnow()
    try:
        updated = db.session.execute(
            update(Notification)
            .where(Notification.user_id == user_id, text(UNREAD))
            .values(_read_at(now))
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    if updated:
        _tell(user_id, NOTIFICATIONS_READ_ALL, {"readAt": utc_iso(now), "count": updated})
    return updated, now


def delete_notification(user_id: str, notification_id: str) -> None:
    """Delete one of the user's notifications."""
    _owned(user_id, notification_id)
    deleted = db.session.execute(
        delete(Notification).where(Notification.id == notification_id, Notification.user_id == user_id)
    ).rowcount
    db.session.commit()
    if deleted:
        _tell(user_id, NOTIFICATION_DELETED, {"id": notification_id})
