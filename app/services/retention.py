"""Retention: old notifications and expired idempotency keys deleted in small batches.

Each batch is its own short transaction, so a prune run from cron never holds a lock
long enough to hold up the server that runs meanwhile.
"""

import logging
from datetime import timedelta

from sqlalchemy import delete, select

from app.extensions import db
from app.models import Notification, utcnow
from app.protocol import NotificationStatus
from app.services import idempotency

log = logging.getLogger(__name__)

BATCH = 1000  # rows per DELETE


def prune_notifications(older_than_days: int, status: NotificationStatus | None = None) -> int:
    """Delete notifications created more than `older_than_days` days ago (of `status` only if
    given); how many were deleted."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    criteria = [Notification.created_at < cutoff]
    if status is not None:
        criteria.append(Notification.status == status)
    deleted = 0
    while True:
        ids = list(db.session.scalars(select(Notification.id).where(*criteria).limit(BATCH)))
        if not ids:
            db.session.commit()
            break
        deleted += db.session.execute(delete(Notification).where(Notification.id.in_(ids))).rowcount
        db.session.commit()
    log.info("pruned %d notification(s) older than %d day(s)", deleted, older_than_days)
    return deleted


def prune_idempotency_keys() -> int:
    """Delete the idempotency keys past their replay window; how many."""
    return idempotency.expire_keys()
