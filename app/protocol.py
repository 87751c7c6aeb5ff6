"""Names shared with clients: Socket.IO events and namespace, room naming, status values.

Defined once, used by the app, the tests and the benchmark; public/client.js keeps its
own copy, which tests/test_protocol.py compares with this one.
"""

import enum

NAMESPACE = "/"

# server -> client
NEW_NOTIFICATION = "new_notification"
PENDING_NOTIFICATIONS = "pending_notifications"
TOKEN_EXPIRED = "token_expired"
UNREAD_COUNT = "unread_count"
NOTIFICATION_UPDATED = "notification_updated"
NOTIFICATION_DELETED = "notification_deleted"
NOTIFICATIONS_READ_ALL = "notifications_read_all"
PREFERENCES_UPDATED = "preferences_updated"
# client -> server
REFRESH_TOKEN = "refresh_token"

# Events that carry notifications, sent with an acknowledgement request.
NOTIFICATION_EVENTS = (NEW_NOTIFICATION, PENDING_NOTIFICATIONS)


class NotificationStatus(enum.StrEnum):
    """Life cycle of a notification: stored, then received by a socket, then read."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    READ = "READ"


# Categories and topics: lowercase names (contract v3).
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
DEFAULT_CATEGORY = "general"


def user_room(user_id: str) -> str:
    """The private Socket.IO room of a user: every socket of that user is in it."""
    return f"user:{user_id}"
