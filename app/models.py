"""Database models."""

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Enum, Index, String, Text, TypeDecorator, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.protocol import DEFAULT_CATEGORY, NotificationStatus
from app.records import NotificationRecord, new_id, new_ids, utcnow  # noqa: F401  (part of the models' interface)


class UTCTimestamp(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, so values are normalised to UTC on the way in and
    tagged as UTC on the way out; PostgreSQL stores `timestamptz`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


UNCONFIRMED = "status = 'DELIVERED' AND received_at IS NULL"
# Every status but READ, named rather than `<> 'READ'`: an IN list is a range of
# ix_notifications_user_status_created per status, so the unread counts need no index of their own.
UNREAD = "status IN ({})".format(
    ", ".join(f"'{status.value}'" for status in NotificationStatus if status is not NotificationStatus.READ)
)
# Every category but the default one, which almost every row has. A query must name this very
# term to read ix_notifications_user_category_created_other on SQLite (a bound `category = ?`
# proves nothing about the index's WHERE), so inbox.list_notifications adds it there as written.
OTHER_CATEGORY = f"category <> '{DEFAULT_CATEGORY}'"


class Notification(db.Model):
    """One message for one user, kept as history."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[NotificationStatus] = mapped_column(
        Enum(
            NotificationStatus,
            name="notification_status",
            native_enum=False,
            length=16,
            create_constraint=True,
            validate_strings=True,
        ),
        default=NotificationStatus.PENDING,
    )
    created_at: Mapped[datetime] = mapped_column(UTCTimestamp(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCTimestamp())
    read_at: Mapped[datetime | None] = mapped_column(UTCTimestamp())
    # When the user's client confirmed it (an acknowledgement, or a send to a plain client).
    received_at: Mapped[datetime | None] = mapped_column(UTCTimestamp())
    # Optional JSON object the sender attached (e.g. where to go when clicked).
    data: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    # The `sub` of the admin token that sent it.
    created_by: Mapped[str | None] = mapped_column(String(255))
    # What kind of notification it is (users mute categories); "general" unless the sender says.
    category: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_CATEGORY, server_default=DEFAULT_CATEGORY
    )
    # The topic it was sent to; None for a send to a list of users.
    topic: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # "this user's pending ones, oldest first" (connect), the ?status= filter, and
        # "how many of this user's are unread" (UNREAD).
        Index("ix_notifications_user_status_created", "user_id", "status", "created_at"),
        # "this user's newest first" with a (created_at, id) cursor.
        Index("ix_notifications_user_created_id", "user_id", "created_at", "id"),
        # the same within one category other than the default (?category=). Not left to the
        # index above: a rare category would walk all of the user's rows to fill a page
        # (bench/README.md). The default category is most rows and fills a page from the index
        # above, so its rows stay out of this one: a send or a claim of them never writes it.
        Index(
            "ix_notifications_user_category_created_other",
            "user_id",
            "category",
            "created_at",
            "id",
            postgresql_where=text(OTHER_CATEGORY),
            sqlite_where=text(OTHER_CATEGORY),
        ),
        # The sweeper's "sent, never confirmed, since when": only such rows are in it.
        Index(
            "ix_notifications_unconfirmed",
            "delivered_at",
            postgresql_where=text(UNCONFIRMED),
            sqlite_where=text(UNCONFIRMED),
        ),
    )

    def __repr__(self) -> str:
        return f"<Notification {self.id} user={self.user_id} {self.status.value}>"


RECORD_COLUMNS = tuple(Notification.__table__.c[name] for name in NotificationRecord.__slots__)


class IdempotencyKey(db.Model):
    """The first answer to an admin send made with an `Idempotency-Key`, kept 24 hours."""

    __tablename__ = "idempotency_keys"

    admin: Mapped[str] = mapped_column(String(255), primary_key=True)  # the sender's `sub`
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical JSON body
    answer: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))  # None while in progress
    created_at: Mapped[datetime] = mapped_column(UTCTimestamp(), default=utcnow)

    __table_args__ = (Index("ix_idempotency_keys_created", "created_at"),)


class MutedCategory(db.Model):
    """A category one user does not want: its notifications are neither stored for them nor sent."""

    __tablename__ = "muted_categories"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)

    # "which of these users muted this category" (every send)
    __table_args__ = (Index("ix_muted_categories_category_user", "category", "user_id"),)


class TopicSubscription(db.Model):
    """One user in one topic: a send to the topic reaches the users in it at that moment."""

    __tablename__ = "topic_subscriptions"

    topic: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    subscribed_at: Mapped[datetime] = mapped_column(UTCTimestamp(), default=utcnow)

    # "the topics this user is in" (GET /v1/topics)
    __table_args__ = (Index("ix_topic_subscriptions_user_topic", "user_id", "topic"),)
