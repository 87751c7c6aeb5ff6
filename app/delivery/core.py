"""The delivery core: stores notifications, decides who gets them, sends them, puts back what was lost.

Ordering rules that keep a connecting user from missing a notification:

- connect: join the user's room, count the socket as online, *then* claim the user's
  PENDING rows (one UPDATE ... RETURNING) and send them;
- create: read presence, insert every row in one statement and commit, send to the users
  that were online, *then* read presence again: rows stored DELIVERED whose user has left
  since go back to PENDING, and PENDING rows whose user has come online are claimed and sent.

A create that saw the user offline either commits before the connect's claim (the claim
picks the row up) or after it, in which case the second presence read sees the user
online. Both sides claim with `status = 'PENDING'` in the WHERE clause, so a row is sent by
exactly one of them. With several processes, each send is routed by a presence read and
followed to where its users moved (sends.py). What reaches no socket, or a socket that
closes before it acknowledges, comes back: the closing socket puts it back
(putback.py), and the sweeper puts back whatever stays unconfirmed (sweeper.py).
"""

import logging
from collections.abc import Callable, Mapping, Sequence

from app import metrics
from app.delivery.confirmations import Confirmations, Tracker
from app.delivery.ports import Presence, Reading, Route, Store, Transport
from app.delivery.putback import PutBack
from app.delivery.sends import NOBODY, Sends, count_route, notification_items
from app.delivery.sweeper import Sweeper
from app.errors import DomainError, TooManySocketsError
from app.protocol import (
    DEFAULT_CATEGORY,
    NEW_NOTIFICATION,
    PENDING_NOTIFICATIONS,
    UNREAD_COUNT,
    NotificationStatus,
)
from app.records import NotificationRecord, new_records, oldest_first
from app.schemas import notification_to_wire as to_wire

# The name operators' log filters select delivery lines by.
log = logging.getLogger("app.services.delivery")

# Log lines that operators and tests read (tests/support/logs.py).
CREATED_LOG = "created %d notification(s) sent by %s: %d delivered live, %d pending"
CONNECTED_LOG = "user %s connected (sid %s): %d pending sent"

DELIVERED, PENDING = NotificationStatus.DELIVERED, NotificationStatus.PENDING


class Delivery:
    """One process's delivery: its collaborators are passed in (ports.py), `config` is read live."""

    def __init__(
        self,
        store: Store,
        presence: Presence,
        transport: Transport,
        confirmations: Confirmations,
        config: Mapping,
        later: Callable[[float, Callable[[], None]], None],
    ) -> None:
        self.store = store
        self.presence = presence
        self.transport = transport
        self.confirmations = confirmations
        self.tracker = Tracker(confirmations.add)
        self.config = config
        self.sends = Sends(presence, transport)
        self.sweeper = Sweeper(store, presence, confirmations, config, self.send_pending)
        self.put_back = PutBack(store, presence, confirmations, self.send_pending, later)

    # ---- create ---------------------------------------------------------------------

    def create(
        self,
        user_ids: Sequence[str],
        message: str,
        data: dict | None = None,
        created_by: str | None = None,
        before_commit: Callable[[], None] | None = None,
        *,
        category: str = DEFAULT_CATEGORY,
        topic: str | None = None,
    ) -> list[NotificationRecord]:
        """Store one notification per distinct user who did not mute `category`, and send it live
        to those online; the notifications stored.

        All rows go in with one INSERT in one transaction, which leaves out the users who
        muted the category; a row is DELIVERED when its user had a socket connected, else
        PENDING (sent on their next connect), and received at once when the user had a plain
        client's socket (its confirmation never waits on the process that holds that socket,
        which may die first). Users who got it live also get their new unread count.
        `before_commit` runs inside that transaction.
        """
        targets = _checked(user_ids, message)
        first = self.presence.read(targets)
        records = new_records(
            targets,
            first.online,
            first.plain,
            message=message,
            data=data,
            created_by=created_by,
            category=category,
            topic=topic,
        )
        created = self.store.insert(records, before_commit)
        delivered = [n for n in created if n.status is DELIVERED]
        self.sends.notifications(delivered, first)
        second = self._after_send(delivered, first)
        last = self._deliver_to_late_arrivals(created) or (second if delivered else first)
        live = {n.user_id for n in created if n.status is DELIVERED}
        # Let the sockets' writers send the notifications before the counts are read and queued.
        self.transport.pause()
        self.send_unread_counts(live, count_route(live, [first, second, last]))
        log.info(CREATED_LOG, len(created), created_by or "-", len(live), len(created) - len(live))
        metrics.notifications_created(delivered=len(live), pending=len(created) - len(live))
        return created

    def _after_send(self, delivered: list[NotificationRecord], published: Reading) -> Reading:
        """Read presence again after the first send: follow users who moved, put back what went to none.

        Returns that second read (nobody, when nothing was delivered).
        """
        if not delivered:
            return NOBODY
        users = {n.user_id for n in delivered}
        now = self.presence.read(users)
        departed = users - now.online
        stayed = [n for n in delivered if n.user_id not in departed]
        self.sends.again(NEW_NOTIFICATION, notification_items(stayed), published, now)
        if departed:
            self._put_back_departed(delivered, departed, published.acknowledging)
        return now

    def _put_back_departed(
        self, delivered: list[NotificationRecord], departed: set[str], acknowledging
    ) -> None:
        """Back to PENDING the rows of users whose sockets all closed before the send.

        In one process that is certain (nothing yields between the send and the read), so every
        such row goes back, a plain client's too. With several processes another process may
        have sent it just before its socket closed: rows nobody confirmed go back, and the rows
        of users who had an acknowledging socket at the first read (at least once wins over a
        plain socket that may have had it); a plain-only user's row stays received.
        """
        self.confirmations.flush()  # what a socket of this process acknowledged before leaving
        back = [n.id for n in delivered if n.user_id in departed]
        if self.presence.shared:
            guaranteed = [n.id for n in delivered if n.user_id in departed & acknowledging]
            requeued = self.store.requeue(back, keep_confirmed=True, always=guaranteed)
        else:
            requeued = self.store.requeue(back, keep_confirmed=False)
        for notification in delivered:
            if notification.id in requeued:
                notification.status, notification.delivered_at, notification.received_at = PENDING, None, None
        log.info("%d user(s) left before the send: %d back to PENDING", len(departed), len(requeued))
        metrics.REQUEUED_USER_LEFT.inc(len(requeued))

    def _deliver_to_late_arrivals(self, created: list[NotificationRecord]) -> Reading | None:
        """Send the PENDING ones whose user connected while the rows were being written (or since).

        Returns the last presence read made; None when nothing was PENDING.
        """
        pending = [n for n in created if n.status is PENDING]
        if not pending:
            return None
        reading = self.presence.read({n.user_id for n in pending})
        if not reading.online:
            return reading
        claimed = {n.id: n for n in self._claim(reading.online, reading.plain, pending)}
        for notification in pending:
            if notification.id in claimed:
                notification.status = DELIVERED
                notification.delivered_at = claimed[notification.id].delivered_at
        return self.sends.send_and_follow(NEW_NOTIFICATION, notification_items(claimed.values()), reading)

    def _claim(self, users: set[str], plain, among: list[NotificationRecord] | None = None) -> list:
        """Claim the PENDING rows of `users` (only those `among`, if given): a plain client's as received."""
        claimed: list[NotificationRecord] = []
        for group, received in ((users - plain, False), (users & plain, True)):
            if not group:
                continue
            if among is None:
                claimed += self.store.claim(users=sorted(group), received=received)
            else:
                claimed += self.store.claim(
                    ids=[n.id for n in among if n.user_id in group], received=received
                )
        return claimed

    # ---- sends ----------------------------------------------------------------------

    def send_pending(self, user_ids: set[str]) -> int:
        """Claim the PENDING rows of these users and send them to each user's sockets; how many."""
        reading = self.presence.read(user_ids)
        by_user: dict[str, list[NotificationRecord]] = {}
        for notification in self._claim(set(user_ids), reading.plain):
            by_user.setdefault(notification.user_id, []).append(notification)
        items = [(user_id, [to_wire(n) for n in oldest_first(rows)]) for user_id, rows in by_user.items()]
        self.sends.send_and_follow(PENDING_NOTIFICATIONS, items, reading)
        return sum(len(rows) for rows in by_user.values())

    def send_unread_counts(self, user_ids: set[str], route: Route | None = None) -> None:
        """The unread count of each of these users, to all their sockets (every process without a route)."""
        if user_ids:
            self.sends.unread_counts(self.store.unread_counts(user_ids), route or Route())

    def tell_user(self, user_id: str, event: str, payload: dict, count: bool = True) -> None:
        """A change of the user's (inbox, preferences) to all their sockets; with `count`, then their
        new unread count."""
        self.transport.send(event, [(user_id, payload)], Route())
        if count:
            self.send_unread_counts({user_id})

    # ---- sockets --------------------------------------------------------------------

    def connect(self, user_id: str, sid: str, acknowledging: bool) -> list[NotificationRecord]:
        """Register socket `sid` of `user_id` and send it the user's PENDING notifications.

        The socket's kind is registered first, so the pending ones go out as it asks. The room
        is joined and the socket counted online before the PENDING rows are claimed, so a
        notification created meanwhile is either claimed here or seen by the creator's second
        presence read. On failure nothing of the socket is kept (the caller refuses it).
        """
        self.tracker.register(sid, acknowledging)
        try:
            return self._connect(user_id, sid, plain=not acknowledging)
        except Exception:
            self.tracker.forget(sid)
            raise

    def _connect(self, user_id: str, sid: str, plain: bool) -> list[NotificationRecord]:
        limit = self.config["MAX_SOCKETS_PER_USER"]
        if self.presence.socket_count(user_id) >= limit:
            raise TooManySocketsError(f"at most {limit} connections per user")
        self.transport.join(sid, user_id)
        self.presence.add(user_id, sid, plain)
        try:
            has_pending, unread = self.store.connect_state(user_id)
            claimed = self.store.claim(users=[user_id], received=plain) if has_pending else []
            if has_pending:
                unread = self.store.unread_counts([user_id])[user_id]  # a create may have committed meanwhile
        except Exception:
            self.presence.remove(sid)
            self.transport.leave(sid, user_id)
            raise
        pending = oldest_first(claimed)
        if pending:
            self.transport.send_to_socket(sid, PENDING_NOTIFICATIONS, [to_wire(n) for n in pending])
        self.transport.send_to_socket(sid, UNREAD_COUNT, {"count": unread})  # right after the pending ones
        log.info(CONNECTED_LOG, user_id, sid, len(pending))
        return pending

    def disconnect(self, sid: str) -> str | None:
        """Stop counting socket `sid`; put back to PENDING what it never acknowledged (putback.py).

        Returns the socket's user, if it was counted.
        """
        user_id = self.presence.remove(sid)
        unacknowledged = self.tracker.forget(sid)
        if user_id is not None:
            self.put_back.closed(user_id, sid, unacknowledged)
        return user_id


def _checked(user_ids: Sequence[str], message: str) -> list[str]:
    """The distinct targets, in order; DomainError for what no view should have let through."""
    targets = list(dict.fromkeys(user_ids))
    if not targets or not all(isinstance(u, str) and u for u in targets):
        raise DomainError("user ids must be a non-empty list of non-empty strings")
    if not isinstance(message, str) or not message:
        raise DomainError("message must be a non-empty string")
    return targets
