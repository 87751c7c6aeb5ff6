"""The delivery core's store (app/delivery/ports.py `Store`) on the app's database: rows.py by values."""

from collections.abc import Callable, Collection, Iterable
from datetime import datetime

from sqlalchemy import or_

from app.extensions import db
from app.models import Notification, NotificationRecord
from app.services import inbox, reads, rows, topics

_TABLE = Notification.__table__


class NotificationStore:
    """Each method one atomic change or read of the notifications table (in the current app context)."""

    def insert(
        self, records: list[NotificationRecord], before_commit: Callable[[], None] | None = None
    ) -> list[NotificationRecord]:
        """Write `records` in one transaction, with `before_commit` inside it, but not those whose
        user muted their category; the records written. Nothing on failure."""
        if before_commit is None:
            return rows.insert_alone(records)
        try:
            written = rows.insert(records)
            before_commit()
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        return written

    def claim(
        self, ids: Collection[str] = (), users: Collection[str] = (), received: bool = False
    ) -> list[NotificationRecord]:
        """Mark DELIVERED the PENDING rows among `ids` or of `users`; exactly the rows changed."""
        if ids:
            return rows.claim(_TABLE.c.id.in_(list(ids)), received=received)
        if users:
            return rows.claim(_TABLE.c.user_id.in_(list(users)), received=received)
        return []

    def requeue(
        self, ids: Collection[str], keep_confirmed: bool = True, always: Collection[str] = ()
    ) -> set[str]:
        """Put back to PENDING the DELIVERED rows among `ids`; with `keep_confirmed`, not the received
        ones, unless among `always`. Their ids."""
        if not ids:
            return set()
        if not keep_confirmed:
            return rows.requeue(_TABLE.c.id.in_(list(ids)))
        unconfirmed = _TABLE.c.received_at.is_(None)
        if always:
            unconfirmed = or_(unconfirmed, _TABLE.c.id.in_(list(always)))
        return rows.requeue(_TABLE.c.id.in_(list(ids)), unconfirmed)

    def requeue_unconfirmed(self, sent_before: datetime) -> set[str]:
        """Put back to PENDING what was sent before `sent_before` and never confirmed; their users."""
        return rows.requeue_unconfirmed(sent_before)

    def connect_state(self, user_id: str) -> tuple[bool, int]:
        """(whether the user has PENDING rows, how many of their rows are unread)."""
        return reads.connect_state(user_id)

    def unread_counts(self, user_ids: Iterable[str]) -> dict[str, int]:
        """How many rows of each user are not READ."""
        return inbox.unread_counts(user_ids)

    def confirm(self, notification_ids: list[str]) -> int:
        """Stamp `received_at` on these notifications (those not stamped yet); how many were."""
        return rows.confirm(notification_ids)

    def subscribers(self, topic: str, after: str | None, limit: int, joined_by: datetime) -> list[str]:
        """Up to `limit` users of `topic` in id order after `after`, who joined it by `joined_by`."""
        return topics.batch(topic, after, limit, joined_by)

    def commit_only(self, before_commit: Callable[[], None]) -> None:
        """Run `before_commit` in a transaction of its own that stores nothing else."""
        try:
            before_commit()
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
