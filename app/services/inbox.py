"""A user's inbox: list (cursor pages), mark read, delete. Only ever the user's own rows."""

import base64
import binascii
import uuid
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update

from app.errors import DomainError, NotFoundError
from app.extensions import db
from app.models import Notification, utcnow
from app.protocol import NotificationStatus


def encode_cursor(notification: Notification) -> str:
    """An opaque position just after `notification` in newest-first order."""
    raw = f"{notification.created_at.isoformat()}|{notification.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, notification_id = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError(raw)
        uuid.UUID(notification_id)  # ids are UUIDs; anything else (NUL included) is refused here
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise DomainError("The cursor is not valid; use the Link header as given.") from exc
    return created_at, notification_id


def list_notifications(
    user_id: str,
    limit: int,
    status: NotificationStatus | None = None,
    cursor: str | None = None,
) -> tuple[list[Notification], str | None]:
    """A page of the user's notifications, newest first, and the cursor of the next page."""
    query = select(Notification).where(Notification.user_id == user_id)
    if status is not None:
        query = query.where(Notification.status == status)
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


def mark_read(user_id: str, notification_id: str) -> Notification:
    """Mark one of the user's notifications READ; repeating it changes nothing."""
    notification = _owned(user_id, notification_id)
    if notification.status is not NotificationStatus.READ:
        now = utcnow()
        # Conditional, so two concurrent calls cannot both stamp a `readAt`.
        db.session.execute(
            update(Notification)
            .where(
                Notification.id == notification_id,
                Notification.status != NotificationStatus.READ,
            )
            .values(
                status=NotificationStatus.READ,
                read_at=now,
                # Read through the REST API before any socket got it: it reached the user.
                delivered_at=func.coalesce(Notification.delivered_at, now),
                received_at=func.coalesce(Notification.received_at, now),
            )
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        db.session.refresh(notification)
    return notification


def delete_notification(user_id: str, notification_id: str) -> None:
    """Delete one of the user's notifications."""
    _owned(user_id, notification_id)
    db.session.execute(
        delete(Notification).where(Notification.id == notification_id, Notification.user_id == user_id)
    )
    db.session.commit()
