"""Topics: named lists of users kept by the admin side, stored and shared by every process.

A send to a topic reaches the users in it at that moment (app/services/topic_sends.py);
here the lists are kept: add, remove, page through, a user's own topics, leaving one.
"""

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import TopicSubscription, utcnow
from app.services.queries import sorted_values

WRITE_BATCH = 1000  # users per INSERT / DELETE


def add_subscribers(topic: str, user_ids: list[str]) -> int:
    """Put `user_ids` in `topic`; how many were not in it already."""
    users = sorted(set(user_ids))
    added = 0
    try:
        for start in range(0, len(users), WRITE_BATCH):
            batch = users[start : start + WRITE_BATCH]
            present = set(
                db.session.scalars(
                    select(TopicSubscription.user_id).where(
                        TopicSubscription.topic == topic, TopicSubscription.user_id.in_(batch)
                    )
                )
            )
            new = [u for u in batch if u not in present]
            if new:
                now = utcnow()
                db.session.execute(
                    _insert_ignoring_present(),
                    [{"topic": topic, "user_id": u, "subscribed_at": now} for u in new],
                )
            added += len(new)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return added


def _insert_ignoring_present():
    """An INSERT that skips a row a concurrent request stored meanwhile (same topic and user)."""
    dialect = db.session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(TopicSubscription).on_conflict_do_nothing(index_elements=["topic", "user_id"])


def remove_subscribers(topic: str, user_ids: list[str]) -> int:
    """Take `user_ids` out of `topic`; how many were in it."""
    users = sorted(set(user_ids))
    removed = 0
    try:
        for start in range(0, len(users), WRITE_BATCH):
            removed += db.session.execute(
                delete(TopicSubscription).where(
                    TopicSubscription.topic == topic,
                    TopicSubscription.user_id.in_(users[start : start + WRITE_BATCH]),
                )
            ).rowcount
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return removed


def subscribers(topic: str, limit: int, after: str | None = None) -> tuple[list[str], str | None]:
    """A page of `topic`'s users sorted by id, starting after `after`; and the next page's `after`."""
    query = select(TopicSubscription.user_id).where(TopicSubscription.topic == topic)
    if after is not None:
        query = query.where(TopicSubscription.user_id > after)
    users = list(db.session.scalars(query.order_by(TopicSubscription.user_id).limit(limit + 1)))
    if len(users) > limit:
        return users[:limit], users[limit - 1]
    return users, None


def batch(topic: str, after: str | None, limit: int, joined_by: datetime) -> list[str]:
    """Up to `limit` users of `topic` in id order after `after`, who joined it by `joined_by`.

    Its own short read: a topic send reads its subscribers a batch at a time, never all at once.
    """
    query = select(TopicSubscription.user_id).where(
        TopicSubscription.topic == topic, TopicSubscription.subscribed_at <= joined_by
    )
    if after is not None:
        query = query.where(TopicSubscription.user_id > after)
    users = list(db.session.scalars(query.order_by(TopicSubscription.user_id).limit(limit)))
    db.session.commit()  # end the read transaction: nothing is held between batches
    return users


def subscriber_count(topic: str) -> int:
    """How many users are in `topic`."""
    return db.session.scalar(select(func.count()).where(TopicSubscription.topic == topic))


def topics_of(user_id: str) -> list[str]:
    """The topics `user_id` is in, sorted."""
    return sorted_values(TopicSubscription.topic, TopicSubscription.user_id == user_id)


def leave(user_id: str, topic: str) -> None:
    """`user_id` leaves `topic` (nothing happens when they were not in it)."""
    db.session.execute(
        delete(TopicSubscription).where(
            TopicSubscription.topic == topic, TopicSubscription.user_id == user_id
        )
    )
    db.session.commit()
