"""Notifications: the one place that stores them and emits them to sockets.

Ordering rules that keep a connecting user from missing a notification:

- connect: join the room, count the socket as online, *then* claim the user's
  PENDING rows (one UPDATE ... RETURNING) and send them;
- create: read presence, insert every row in one statement and commit, emit to
  the users that were online, *then* read presence again: rows stored DELIVERED
  whose user has left since go back to PENDING, and PENDING rows whose user has
  come online are claimed and emitted.

A create that saw the user offline either commits before the connect's claim
(the claim picks the row up) or after it, in which case the second presence
read sees the user online. Both sides claim with `status = 'PENDING'` in the
WHERE clause, so a row is sent by exactly one of them.
"""

import base64
import binascii
import logging
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from operator import attrgetter

from flask import current_app
from sqlalchemy import String, and_, bindparam, delete, func, insert, or_, select, update

from app.errors import DomainError, NotFoundError
from app.extensions import db, socketio
from app.models import RECORD_COLUMNS, Notification, NotificationRecord, new_ids, utcnow
from app.protocol import NAMESPACE, NEW_NOTIFICATION, PENDING_NOTIFICATIONS, NotificationStatus, user_room
from app.schemas import notification_to_wire
from app.services.presence import get_presence

log = logging.getLogger(__name__)



class TooManySockets(DomainError):
    """The user already has as many connections as one user may."""

    status = 429
    code = "too_many_connections"


def to_wire(notification) -> dict:
    """A notification (model or record) as JSON-ready data, in the contract's camelCase form."""
    return notification_to_wire(notification)


def _publishing_together():
    """With several processes, one message-queue round trip for every emit in the block."""
    return getattr(socketio.server.manager, "publishing_together", nullcontext)()


def _emit_each(notifications: Sequence[NotificationRecord]) -> None:
    with _publishing_together():
        for notification in notifications:
            socketio.emit(
                NEW_NOTIFICATION,
                to_wire(notification),
                to=user_room(notification.user_id),
                namespace=NAMESPACE,
            )


def create_notifications(user_ids: Sequence[str], message: str) -> list[NotificationRecord]:
    """Store one notification per distinct user and send it live to those online.

    All rows go in with one INSERT in one transaction; a row is DELIVERED when its
    user had a socket connected, else PENDING (sent on their next connect).
    """
    targets = list(dict.fromkeys(user_ids))
    if not targets or not all(isinstance(u, str) and u for u in targets):
        raise DomainError("user ids must be a non-empty list of non-empty strings")
    if not isinstance(message, str) or not message:
        raise DomainError("message must be a non-empty string")

    presence = get_presence()
    online = presence.online(targets)
    now = utcnow()
    created = [
        NotificationRecord(
            id=notification_id,
            user_id=user_id,
            message=message,
            status=NotificationStatus.DELIVERED if user_id in online else NotificationStatus.PENDING,
            created_at=now,
            delivered_at=now if user_id in online else None,
            read_at=None,
        )
        for notification_id, user_id in zip(new_ids(len(targets)), targets, strict=True)
    ]
    try:
        _insert(created)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    _emit_each([n for n in created if n.status is NotificationStatus.DELIVERED])
    _requeue_for_departed(created, presence)
    _deliver_to_late_arrivals(created, presence)
    delivered = sum(1 for n in created if n.status is NotificationStatus.DELIVERED)
    log.info(
        "created %d notification(s): %d delivered live, %d pending",
        len(created),
        delivered,
        len(created) - delivered,
    )
    return created


def _requeue_for_departed(created: list[NotificationRecord], presence) -> None:
    """Put back to PENDING the DELIVERED ones whose user left before the emit.

    The user was online at the first presence read; if their last socket closed
    before the commit, the emit found no socket and nothing tracks the row.
    """
    delivered = [n for n in created if n.status is NotificationStatus.DELIVERED]
    if not delivered:
        return
    departed = {n.user_id for n in delivered} - presence.online({n.user_id for n in delivered})
    if not departed:
        return
    back = [n for n in delivered if n.user_id in departed]
    _requeue(Notification.__table__.c.id.in_([n.id for n in back]))
    for notification in back:
        notification.status, notification.delivered_at = NotificationStatus.PENDING, None
    log.info("%d user(s) left while their notification was written: kept PENDING", len(departed))


def _insert(records: list[NotificationRecord]) -> None:
    """Write `records` with one INSERT, converting each distinct column value once.

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


_INSERT_NAMES = [f"raw_{column.key}" for column in RECORD_COLUMNS]
# Parameters typed as String, which converts nothing: the values go to the driver as they are.
_INSERT_CONVERTED = insert(Notification.__table__).values(
    {
        column.key: bindparam(name, type_=String())
        for column, name in zip(RECORD_COLUMNS, _INSERT_NAMES, strict=True)
    }
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
        if value not in done:
            done[value] = process(value)
        return done[value]

    return map(convert, values)


def _deliver_to_late_arrivals(created: list[NotificationRecord], presence) -> int:
    """Send the PENDING ones whose user connected while the rows were being written (or since)."""
    pending = [n for n in created if n.status is NotificationStatus.PENDING]
    if not pending:
        return 0
    arrived = presence.online({n.user_id for n in pending})
    if not arrived:
        return 0
    claimed = {n.id: n for n in mark_delivered([n.id for n in pending if n.user_id in arrived])}
    for notification in pending:
        if notification.id in claimed:
            notification.status = NotificationStatus.DELIVERED
            notification.delivered_at = claimed[notification.id].delivered_at
    _emit_each(list(claimed.values()))
    return len(claimed)


def mark_delivered(notification_ids: Sequence[str]) -> list[NotificationRecord]:
    """Mark the still-PENDING ones among `notification_ids` DELIVERED, in one UPDATE.

    Returns exactly the rows this call changed, so a caller that sends them never
    sends a row another caller already sent.
    """
    if not notification_ids:
        return []
    return _claim(Notification.__table__.c.id.in_(list(notification_ids)))


def _claim(*criteria) -> list[NotificationRecord]:
    table = Notification.__table__
    statement = (
        update(table)
        .where(table.c.status == NotificationStatus.PENDING, *criteria)
        .values(status=NotificationStatus.DELIVERED, delivered_at=utcnow())
        .returning(*RECORD_COLUMNS)
    )
    try:
        claimed = [NotificationRecord(*row) for row in db.session.execute(statement)]
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return claimed


def presence_tick() -> None:
    """One heartbeat of this process: prove it alive, restore, reap (see presence.py).

    After a Redis outage this process's sockets are registered again and their
    users get what was stored PENDING meanwhile. When another process died, the
    notifications marked DELIVERED to its users since its last heartbeat may never
    have reached anyone: they go back to PENDING, and are sent at once to those of
    its users who are connected elsewhere.
    """
    presence = get_presence()
    tick = presence.heartbeat()
    to_send = set(tick.resynced_users)
    for dead in tick.dead:
        requeued = _requeue_unconfirmed(dead.user_ids, since=dead.last_beat - CLOCK_SKEW_SECONDS)
        presence.finish_reaping(dead)
        log.warning(
            "process %s stopped without closing its %d user(s); %d notification(s) back to PENDING",
            dead.process_id,
            len(dead.user_ids),
            requeued,
        )
        to_send |= presence.online(dead.user_ids)
    if to_send:
        send_pending(to_send)


# Heartbeats carry the sender's clock; allow for that much difference between machines.
CLOCK_SKEW_SECONDS = 2.0


def _requeue_unconfirmed(user_ids: set[str], since: float) -> int:
    if not user_ids:
        return 0
    table = Notification.__table__
    return _requeue(
        table.c.user_id.in_(sorted(user_ids)),
        table.c.delivered_at >= datetime.fromtimestamp(since, UTC),
    )


def send_pending(user_ids: set[str]) -> int:
    """Claim the PENDING rows of these users and send them to each user's room."""
    claimed = _claim(Notification.__table__.c.user_id.in_(sorted(user_ids)))
    by_user: dict[str, list[NotificationRecord]] = {}
    for notification in claimed:
        by_user.setdefault(notification.user_id, []).append(notification)
    with _publishing_together():
        for user_id, rows in by_user.items():
            _emit_pending(rows, to=user_room(user_id))
    return len(claimed)


def _emit_pending(rows: list[NotificationRecord], to: str) -> list[NotificationRecord]:
    """Send `rows` as one `pending_notifications` array, oldest first; returns them in that order."""
    ordered = sorted(rows, key=lambda n: (n.created_at, n.id))
    if ordered:
        socketio.emit(PENDING_NOTIFICATIONS, [to_wire(n) for n in ordered], to=to, namespace=NAMESPACE)
    return ordered


def connect_socket(user_id: str, sid: str) -> list[NotificationRecord]:
    """Register socket `sid` of `user_id` and send it the user's PENDING notifications.

    The room is joined and the socket counted online before the PENDING rows are
    claimed, so a notification created meanwhile is either claimed here or seen
    by the creator's second presence read (see the module docstring).
    """
    presence = get_presence()
    limit = current_app.config["MAX_SOCKETS_PER_USER"]
    if presence.socket_count(user_id) >= limit:
        raise TooManySockets(f"at most {limit} connections per user")
    socketio.server.enter_room(sid, user_room(user_id), namespace=NAMESPACE)
    presence.add(user_id, sid)
    try:
        claimed = _claim(Notification.__table__.c.user_id == user_id) if _has_pending(user_id) else []
    except Exception:
        # Not counted as connected with pending rows it never got; the caller refuses it.
        presence.remove(sid)
        socketio.server.leave_room(sid, user_room(user_id), namespace=NAMESPACE)
        raise
    pending = _emit_pending(claimed, to=sid)
    log.info("user %s connected (sid %s): %d pending sent", user_id, sid, len(pending))
    return pending


def _has_pending(user_id: str) -> bool:
    """Whether the user has PENDING rows: a read, so most connects write nothing.

    Safe to skip the claim on "no": it runs after the socket counts as online, so a
    row committed afterwards is claimed by its creator's second presence read.
    """
    found = db.session.execute(_HAS_PENDING, {"user_id": user_id}).first()
    db.session.commit()  # end the read transaction, so the next read sees new rows
    return found is not None


_HAS_PENDING = (
    select(Notification.__table__.c.id)
    .where(
        Notification.__table__.c.user_id == bindparam("user_id"),
        Notification.__table__.c.status == NotificationStatus.PENDING,
    )
    .limit(1)
)


def disconnect_socket(sid: str) -> str | None:
    """Stop counting socket `sid`; put back to PENDING what it never acknowledged.

    Only when the user has no other socket left: another socket of theirs got
    the same notifications. If the user connected again meanwhile, the rows put
    back are sent to them at once. Returns the socket's user, if it was counted.
    """
    presence = get_presence()
    user_id = presence.remove(sid)
    unconfirmed = current_app.extensions["deliveries"].forget(sid)
    if user_id is None:
        return None
    requeued = 0
    if unconfirmed and not presence.online([user_id]):
        requeued = _requeue(Notification.__table__.c.id.in_(unconfirmed))
        if requeued and presence.online([user_id]):
            send_pending({user_id})
    log.info("user %s disconnected (sid %s); %d unacknowledged put back", user_id, sid, requeued)
    return user_id


def _requeue(*criteria) -> int:
    """Put the DELIVERED rows matching `criteria` back to PENDING; how many were."""
    table = Notification.__table__
    result = db.session.execute(
        update(table)
        .where(table.c.status == NotificationStatus.DELIVERED, *criteria)
        .values(status=NotificationStatus.PENDING, delivered_at=None)
    )
    db.session.commit()
    return result.rowcount


def encode_cursor(notification: Notification) -> str:
    """An opaque position just after `notification` in newest-first order."""
    raw = f"{notification.created_at.isoformat()}|{notification.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, notification_id = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None or not notification_id:
            raise ValueError(raw)
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
