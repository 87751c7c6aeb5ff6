"""Who a send reaches: listed users, or a topic's users at that moment; less who muted its category.

A direct send is one `Delivery.create`. A topic send reads the topic a batch of users at a
time (in user id order, those who joined by the time the send started) and makes each
batch a direct send of its own: its own transaction, its own presence reads and emits, so
a topic of any size never holds one transaction, and other requests of the process run
between batches. The delivery guarantees are each batch's, so the same as a direct send's.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.delivery.core import Delivery
from app.delivery.ports import Store, Transport
from app.protocol import DEFAULT_CATEGORY, NotificationStatus
from app.records import NotificationRecord, utcnow

TOPIC_BATCH = 1000  # subscribers per batch of a topic send


@dataclass
class DirectSent:
    """What a send to listed users stored, and whom it skipped for a muted category."""

    created: list[NotificationRecord]
    skipped: list[str]


@dataclass
class TopicSent:
    """The counts of a topic send (`recipients` = delivered + pending + skipped)."""

    topic: str
    delivered: int = 0
    pending: int = 0
    skipped: int = 0
    batches: list[int] = field(default_factory=list)

    @property
    def recipients(self) -> int:
        return self.delivered + self.pending + self.skipped

    def to_wire(self) -> dict:
        return {
            "topic": self.topic,
            "recipients": self.recipients,
            "delivered": self.delivered,
            "pending": self.pending,
            "skipped": self.skipped,
        }


class Fanout:
    """Sends to users or to a topic through `delivery`, skipping muted categories."""

    def __init__(
        self, delivery: Delivery, store: Store, transport: Transport, batch: int = TOPIC_BATCH
    ) -> None:
        self.delivery = delivery
        self.store = store
        self.transport = transport
        self.batch = batch

    def to_users(
        self,
        user_ids: Sequence[str],
        message: str,
        *,
        category: str = DEFAULT_CATEGORY,
        topic: str | None = None,
        data: dict | None = None,
        created_by: str | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> DirectSent:
        """One notification per distinct user of `user_ids` who did not mute `category`."""
        targets = list(dict.fromkeys(user_ids))
        created = self.delivery.create(
            targets, message, data, created_by, before_commit, category=category, topic=topic
        )
        stored = {n.user_id for n in created}
        return DirectSent(created, [u for u in targets if u not in stored])

    def to_topic(
        self,
        topic: str,
        message: str,
        *,
        category: str = DEFAULT_CATEGORY,
        data: dict | None = None,
        created_by: str | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> TopicSent:
        """One notification per user in `topic` when the send starts, a batch at a time.

        `before_commit` runs in the first batch's transaction (or alone, for an empty topic).
        """
        started = utcnow()
        sent = TopicSent(topic)
        after = None
        while users := self.store.subscribers(topic, after, self.batch, started):
            after = users[-1]
            batch = self.to_users(
                users,
                message,
                category=category,
                topic=topic,
                data=data,
                created_by=created_by,
                before_commit=before_commit,
            )
            before_commit = None  # claimed with the first batch
            delivered = sum(1 for n in batch.created if n.status is NotificationStatus.DELIVERED)
            sent.delivered += delivered
            sent.pending += len(batch.created) - delivered
            sent.skipped += len(batch.skipped)
            sent.batches.append(len(users))
            self.transport.pause()  # other requests of the process run between batches
        if before_commit is not None:
            self.store.commit_only(before_commit)
        return sent
