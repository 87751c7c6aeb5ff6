"""The wire form of a notification as tests and the bench use it: the admin route, fields, times."""

import uuid
from datetime import datetime

ADMIN_ROUTE = "/v1/admin/notifications"
WIRE_KEYS = {
    "id",
    "userId",
    "message",
    "status",
    "createdAt",
    "deliveredAt",
    "readAt",
    "data",
    "category",
    "topic",
}
SENT_WIRE_KEYS = WIRE_KEYS | {"createdBy"}  # the admin route's answers also say who sent it


def as_recipient_sees(sent: dict) -> dict:
    """A notification of the admin route's answer, as its recipient gets it (without `createdBy`)."""
    return {k: v for k, v in sent.items() if k != "createdBy"}


def parse_time(value):
    """A wire time (ISO 8601, UTC, ending in Z) as an aware datetime."""
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1] + "+00:00")


def assert_wire_object(notification, user_id, message):
    """An unread notification of `user_id` with `message`, exactly as the contract shapes it
    (as the recipient sees it, or with `createdBy` as the admin who sent it does)."""
    assert set(notification) in (WIRE_KEYS, SENT_WIRE_KEYS), notification
    assert str(uuid.UUID(notification["id"])) == notification["id"]
    assert notification["userId"] == user_id
    assert notification["message"] == message
    assert notification["status"] in ("PENDING", "DELIVERED", "READ")
    parse_time(notification["createdAt"])
    if notification["deliveredAt"] is not None:
        parse_time(notification["deliveredAt"])
    assert notification["readAt"] is None
