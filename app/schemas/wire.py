"""A notification on the wire, built directly: what NotificationSchema and SentNotificationSchema
(app/schemas/__init__.py) dump, without marshmallow's per-field machinery."""

from datetime import UTC, datetime
from functools import lru_cache


@lru_cache(maxsize=1024)
def utc_iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing `Z`, e.g. 2026-11-29T10:00:00.123456Z.

    Cached: the rows of one fan-out share their timestamps.
    """
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def notification_to_wire(n, sender: bool = False) -> dict:
    """What `NotificationSchema().dump(n)` gives, built directly.

    Used on the hot paths (every emit, bulk answers), where marshmallow's
    per-field machinery costs more than the database write; a test holds the two
    equal for every status and timestamp. `sender`: the admin's view (SentNotificationSchema).
    """
    wire = {
        "id": n.id,
        "userId": n.user_id,
        "message": n.message,
        "status": n.status.value,
        "createdAt": utc_iso(n.created_at),
        "deliveredAt": utc_iso(n.delivered_at),
        "readAt": utc_iso(n.read_at),
        "data": n.data,
        "category": n.category,
        "topic": n.topic,
    }
    if sender:  # set in place: merging a second dict cost a quarter of a 10,000-row answer's build
        wire["createdBy"] = n.created_by
    return wire


def notifications_to_wire(notifications, sender: bool = False) -> list[dict]:
    """`notification_to_wire` of each, in order, sharing the work of what a fan-out's rows share.

    The rows of one send hold the same message, data, creation time, category, topic and
    sender (the same objects): a row holding those of the row before is a copy of that
    row's view with its own id and user set, and its status and delivery time when they
    differ (a 10,000-row answer: 7.0 -> 3.3 ms).
    """
    wires: list[dict] = []
    previous = None
    for n in notifications:
        if previous is not None and _same_content(n, previous):
            wire = wires[-1].copy()
            wire["id"] = n.id
            wire["userId"] = n.user_id
            if not (n.status is previous.status and n.delivered_at is previous.delivered_at):
                wire["status"] = n.status.value
                wire["deliveredAt"] = utc_iso(n.delivered_at)
        else:
            wire = notification_to_wire(n, sender)
        wires.append(wire)
        previous = n
    return wires


def _same_content(n, other) -> bool:
    return (
        n.read_at is other.read_at
        and n.message is other.message
        and n.data is other.data
        and n.created_at is other.created_at
        and n.category is other.category
        and n.topic is other.topic
        and n.created_by is other.created_by
    )
