"""Delivery: the one place that stores notifications and sends them to sockets.

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

With several processes, a send to a user goes only to the processes that hold
their sockets (app/realtime/queue.py): the sender routes with the holders of the
presence read it made anyway (`last_holders`), and a user it could not read goes
to every process, as without routing. Every send of rows to users (create,
late arrivals, `send_pending`) keeps one rule, so that a user moving between
processes mid-send misses nothing an acknowledging client must get:

- send to the holders of a presence read made *before* the send, then read
  presence *again*; every process that holds an acknowledging socket of the user
  at that second read and was not sent the rows is sent them again, to its
  acknowledging sockets only (`again`).

Each process holding a socket of the user at the first read gets the first send;
each holding an acknowledging socket at the second read, and not sent to, gets
the second, which leaves after that socket was counted online, so after it joined
its room (connect joins first). Left over: a socket that joins after its process
handled the send (as on the shared channel), and one counted after the second
read on a process that got no send (the shared channel reached it only if its
process handled the send after it joined, a few milliseconds). It finds the rows
DELIVERED: the socket they went to acknowledges them or, closing, puts them back
to PENDING, and they are sent to the user's sockets then (`disconnect_socket`);
what reached no socket at all is put back by the sweeper within
DELIVERY_CONFIRM_TIMEOUT. Nothing is lost for an acknowledging client. A plain
client is never sent a row twice by this rule: the second send skips plain
sockets, here and on arrival (one that had it on A before moving to B would get
it again), and at most once lets it miss the row while it moves.
"""

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_

from app import metrics
from app.errors import DomainError, TooManySocketsError
from app.extensions import db, socketio
from app.models import Notification, NotificationRecord, new_ids, utcnow
from app.protocol import (
    NAMESPACE,
    NEW_NOTIFICATION,
    PENDING_NOTIFICATIONS,
    UNREAD_COUNT,
    NotificationStatus,
    user_room,
)
from app.schemas import notification_to_wire as to_wire
from app.services import inbox, rows
from app.services.presence import Holders, get_presence

log = logging.getLogger(__name__)

# Log lines that operators and tests read (tests/support/logs.py).
CREATED_LOG = "created %d notification(s) sent by %s: %d delivered live, %d pending"
CONNECTED_LOG = "user %s connected (sid %s): %d pending sent"
DISCONNECTED_LOG = "user %s disconnected (sid %s); %d unacknowledged put back"
PROCESS_REAPED_LOG = "process %s stopped without closing its sockets: %d user(s) no longer counted online"


def _publishing_together(routes: dict[str, frozenset[str]] | None = None, again: bool = False):
    """With several processes, one message-queue round trip for every emit in the block.

    `routes` (user id -> presence ids of the processes holding their sockets): a user's
    notification events go to those processes only; `again`: to their acknowledging sockets
    only (see `ListeningRedisManager.publishing_together`).
    """
    together = getattr(socketio.server.manager, "publishing_together", None)
    return nullcontext() if together is None else together(routes, again)


def _routes(holders: dict[str, Holders]) -> dict[str, frozenset[str]]:
    """Per user: the processes a send goes to, from a presence read."""
    return {user_id: found.sockets for user_id, found in holders.items()}


def _newcomers(users: Iterable[str], published: dict[str, Holders], now: dict[str, Holders]) -> dict:
    """Per user: the processes that hold an acknowledging socket of theirs at the second presence
    read (`now`) and that the send, routed by the first one (`published`), did not go to.
    None without a message queue: no other process to send to, and no plain sockets to skip."""
    if not hasattr(socketio.server.manager, "publishing_together"):
        return {}
    found = {u: now[u].acknowledging - published[u].sockets for u in users if u in now and u in published}
    return {user_id: processes for user_id, processes in found.items() if processes}


def _emit_each(
    notifications: Sequence[NotificationRecord],
    routes: dict[str, frozenset[str]] | None = None,
    again: bool = False,
) -> None:
    with _publishing_together(routes, again):
        for notification in notifications:
            socketio.emit(
                NEW_NOTIFICATION,
                to_wire(notification),
                to=user_room(notification.user_id),
                namespace=NAMESPACE,
            )


def create_notifications(
    user_ids: Sequence[str],
    message: str,
    data: dict | None = None,
    created_by: str | None = None,
    before_commit: Callable[[], None] | None = None,
) -> list[NotificationRecord]:
    """Store one notification per distinct user and send it live to those online.

    All rows go in with one INSERT in one transaction; a row is DELIVERED when its
    user had a socket connected, else PENDING (sent on their next connect). Users who
    got it live also get their new unread count. `before_commit` runs inside that
    transaction (an idempotency key is claimed there: both are stored, or neither).
    """
    targets = list(dict.fromkeys(user_ids))
    if not targets or not all(isinstance(u, str) and u for u in targets):
        raise DomainError("user ids must be a non-empty list of non-empty strings")
    if not isinstance(message, str) or not message:
        raise DomainError("message must be a non-empty string")

    presence = get_presence()
    # A row whose user has a plain client online counts as received as it is sent: its
    # confirmation never waits on the process that holds that socket (which may die first).
    online, plain, acknowledging = presence.online_kinds(targets)
    holders = presence.last_holders()  # where their sockets are: no other read
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
            received_at=now if user_id in plain else None,
            data=data,
            created_by=created_by,
        )
        for notification_id, user_id in zip(new_ids(len(targets)), targets, strict=True)
    ]
    try:
        rows.insert(created)
        if before_commit is not None:
            before_commit()
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    _emit_each([n for n in created if n.status is NotificationStatus.DELIVERED], _routes(holders))
    reads = [holders, _requeue_for_departed(created, presence, acknowledging, holders)]
    _deliver_to_late_arrivals(created, presence)
    reads.append(presence.last_holders())
    live = {n.user_id for n in created if n.status is NotificationStatus.DELIVERED}
    # unread_count to every process any of these reads found holding a socket of the user
    routes = {
        user_id: frozenset().union(*(read[user_id].sockets for read in reads if user_id in read))
        for user_id in live
        if user_id in reads[0] or user_id in reads[-1]
    }
    # Let the sockets' writers send the notifications before the counts are read and queued
    # behind them: with SQLite nothing else in a create yields (bench/README.md).
    socketio.sleep(0)
    with _publishing_together(routes):
        _send_unread_counts(live)
    log.info(CREATED_LOG, len(created), created_by or "-", len(live), len(created) - len(live))
    metrics.notifications_created(delivered=len(live), pending=len(created) - len(live))
    return created


def _send_unread_counts(user_ids: set[str]) -> None:
    """The new unread count of each of these (online) users, to all their sockets."""
    if not user_ids:
        return
    counts = inbox.unread_counts(user_ids)
    with _publishing_together():
        for user_id, count in counts.items():
            socketio.emit(UNREAD_COUNT, {"count": count}, to=user_room(user_id), namespace=NAMESPACE)


def _requeue_for_departed(
    created: list[NotificationRecord], presence, acknowledging: set[str], published: dict[str, Holders]
) -> dict[str, Holders]:
    """Put back to PENDING the DELIVERED ones whose user left before the emit; send the others
    again to the processes that hold an acknowledging socket of their user now and were not
    sent it. Returns the holders this second presence read found (see `last_holders`).

    The user was online at the first presence read; if their last socket closed
    before the commit, the emit found no socket. In one process that is certain
    (nothing yields between the emit and this read), so every such row goes back,
    a plain client's too. With several processes another process may have sent it
    just before its socket closed: rows nobody confirmed go back, the others stay
    with the sweeper. A row stored received because a plain socket was online
    stays (never sent twice to a plain-only user), unless the user also had an
    acknowledging socket (`acknowledging`, from the first read): those get it at
    least once, even if a plain socket may have had it too.

    `published`: the holders of the first read, which the emit went to. A user still
    online may have moved meanwhile (a socket closed on A, one opened on B): each process
    holding one of their acknowledging sockets now that the emit did not go to is sent it
    again, to its acknowledging sockets only, so a plain client that had it on A is never
    sent it twice (see the module docstring).
    """
    delivered = [n for n in created if n.status is NotificationStatus.DELIVERED]
    if not delivered:
        return {}
    departed = {n.user_id for n in delivered} - presence.online({n.user_id for n in delivered})
    now = presence.last_holders()
    newcomers = _newcomers({n.user_id for n in delivered} - departed, published, now)
    if newcomers:
        _emit_each([n for n in delivered if n.user_id in newcomers], newcomers, again=True)
        log.debug("sent again to %d user(s) who moved to another process meanwhile", len(newcomers))
    if not departed:
        return now
    _flush_confirmations()  # what a socket of this process acknowledged before leaving
    table = Notification.__table__
    back_ids = [n.id for n in delivered if n.user_id in departed]
    if presence.shared:
        guaranteed = [n.id for n in delivered if n.user_id in departed & acknowledging]
        unconfirmed = or_(table.c.received_at.is_(None), table.c.id.in_(guaranteed))
        requeued = rows.requeue_returning(table.c.id.in_(back_ids), unconfirmed)
    else:
        requeued = rows.requeue_returning(table.c.id.in_(back_ids))
    for notification in delivered:
        if notification.id in requeued:
            notification.status, notification.delivered_at = NotificationStatus.PENDING, None
            notification.received_at = None
    log.info("%d user(s) left before the send: %d back to PENDING", len(departed), len(requeued))
    metrics.REQUEUED_USER_LEFT.inc(len(requeued))
    return now


def _deliver_to_late_arrivals(created: list[NotificationRecord], presence) -> int:
    """Send the PENDING ones whose user connected while the rows were being written (or since)."""
    pending = [n for n in created if n.status is NotificationStatus.PENDING]
    if not pending:
        return 0
    arrived, plain, _acknowledging = presence.online_kinds({n.user_id for n in pending})
    if not arrived:
        return 0
    published = presence.last_holders()
    claimed = {
        n.id: n
        for group in (arrived - plain, plain)
        for n in mark_delivered([n.id for n in pending if n.user_id in group], received=group is plain)
    }
    for notification in pending:
        if notification.id in claimed:
            notification.status = NotificationStatus.DELIVERED
            notification.delivered_at = claimed[notification.id].delivered_at
    _emit_each(list(claimed.values()), _routes(published))
    # As after the first send: processes that hold an acknowledging socket of the user now and
    # were not sent it get it (acknowledging sockets only; see the module docstring).
    newcomers = _read_newcomers(presence, {n.user_id for n in claimed.values()}, published)
    if newcomers:
        _emit_each([n for n in claimed.values() if n.user_id in newcomers], newcomers, again=True)
    return len(claimed)


def _read_newcomers(presence, users: set[str], published: dict[str, Holders]) -> dict:
    """Read presence again for the routed ones among `users`; their `_newcomers`."""
    users = users & published.keys()  # empty in a single process: nothing is routed there
    if not users:
        return {}
    presence.online(users)
    return _newcomers(users, published, presence.last_holders())


def mark_delivered(notification_ids: Sequence[str], received: bool = False) -> list[NotificationRecord]:
    """Mark the still-PENDING ones among `notification_ids` DELIVERED, in one UPDATE.

    Returns exactly the rows this call changed, so a caller that sends them never
    sends a row another caller already sent. `received`: see `rows.claim`.
    """
    if not notification_ids:
        return []
    return rows.claim(Notification.__table__.c.id.in_(list(notification_ids)), received=received)


def presence_tick() -> None:
    """One heartbeat of this process: prove it alive, restore, reap (see presence.py).

    After a Redis outage this process's sockets are registered again and their
    users get what was stored PENDING meanwhile. A dead process is taken out of
    presence; what it had sent and never got confirmed comes back through
    `sweep_unconfirmed`, like anything else that was lost on the way.
    """
    presence = get_presence()
    tick = presence.heartbeat()
    for dead in tick.dead:
        presence.finish_reaping(dead)
        log.warning(PROCESS_REAPED_LOG, dead.process_id, len(dead.user_ids))
    if tick.resynced_users:
        send_pending(tick.resynced_users)


def sweep_unconfirmed() -> int:
    """Put back to PENDING what was sent and not confirmed in time, and send it again.

    One mechanism for every way a send can be lost (a socket closed mid-send, a
    process killed, a message-queue publish that never arrived): a notification
    sent DELIVERY_CONFIRM_TIMEOUT seconds ago that no acknowledging socket
    acknowledged, and that no plain socket was sent, goes back to PENDING; users
    online get it at once (by whichever process claims it), others on connect.
    Safe in every process at once: the requeue is one conditional UPDATE.
    """
    timeout = current_app.config["DELIVERY_CONFIRM_TIMEOUT"]
    _flush_confirmations()
    users = rows.requeue_unconfirmed(sent_before=utcnow() - timedelta(seconds=timeout))
    if not users:
        return 0
    log.warning(
        "%d user(s) had notifications unconfirmed after %ss: back to PENDING, sent again if online",
        len(users),
        timeout,
    )
    online = get_presence().online(users)
    return send_pending(online) if online else 0


def _flush_confirmations() -> None:
    """Write this process's gathered confirmations before deciding what was not received."""
    current_app.extensions["confirmations"].flush()


def send_pending(user_ids: set[str]) -> int:
    """Claim the PENDING rows of these users and send them to each user's room."""
    table = Notification.__table__
    presence = get_presence()
    _online, plain, _acknowledging = presence.online_kinds(user_ids)
    published = presence.last_holders()
    claimed = [
        n
        for group, received in ((set(user_ids) - plain, False), (plain, True))
        if group
        for n in rows.claim(table.c.user_id.in_(sorted(group)), received=received)
    ]
    by_user: dict[str, list[NotificationRecord]] = {}
    for notification in claimed:
        by_user.setdefault(notification.user_id, []).append(notification)
    with _publishing_together(_routes(published)):
        for user_id, notifications in by_user.items():
            _emit_pending(notifications, to=user_room(user_id))
    # As a create does: the processes holding an acknowledging socket of the user now, and not
    # sent the rows, get them (acknowledging sockets only; see the module docstring).
    newcomers = _read_newcomers(presence, set(by_user), published)
    if newcomers:
        with _publishing_together(newcomers, again=True):
            for user_id in newcomers:
                _emit_pending(by_user[user_id], to=user_room(user_id))
    return len(claimed)


def _emit_pending(notifications: list[NotificationRecord], to: str) -> list[NotificationRecord]:
    """Send them as one `pending_notifications` array, oldest first; returns them in that order."""
    ordered = sorted(notifications, key=lambda n: (n.created_at, n.id))
    if ordered:
        socketio.emit(PENDING_NOTIFICATIONS, [to_wire(n) for n in ordered], to=to, namespace=NAMESPACE)
    return ordered


def connect_socket(user_id: str, sid: str, plain: bool = False) -> list[NotificationRecord]:
    """Register socket `sid` of `user_id` and send it the user's PENDING notifications.

    The room is joined and the socket counted online before the PENDING rows are
    claimed, so a notification created meanwhile is either claimed here or seen
    by the creator's second presence read (see the module docstring).
    """
    presence = get_presence()
    limit = current_app.config["MAX_SOCKETS_PER_USER"]
    if presence.socket_count(user_id) >= limit:
        raise TooManySocketsError(f"at most {limit} connections per user")
    socketio.server.enter_room(sid, user_room(user_id), namespace=NAMESPACE)
    presence.add(user_id, sid, plain)
    try:
        has_pending, unread = rows.connect_state(user_id)
        if has_pending:
            claimed = rows.claim(Notification.__table__.c.user_id == user_id, received=plain)
            unread = inbox.unread_count(user_id)  # a create may have committed meanwhile
        else:
            claimed = []
    except Exception:
        # Not counted as connected with pending rows it never got; the caller refuses it.
        presence.remove(sid)
        socketio.server.leave_room(sid, user_room(user_id), namespace=NAMESPACE)
        raise
    pending = _emit_pending(claimed, to=sid)
    # right after pending_notifications (contract v2)
    socketio.emit(UNREAD_COUNT, {"count": unread}, to=sid, namespace=NAMESPACE)
    log.info(CONNECTED_LOG, user_id, sid, len(pending))
    return pending


def disconnect_socket(sid: str) -> str | None:
    """Stop counting socket `sid`; put back to PENDING what it never acknowledged.

    An acknowledging socket's unacknowledged sends go back unless something else
    confirmed them meanwhile (another socket's acknowledgement, a plain socket);
    if the user still has a socket, they are sent again at once. A plain socket
    has none. Returns the socket's user, if it was counted.
    """
    presence = get_presence()
    user_id = presence.remove(sid)
    unacknowledged = current_app.extensions["deliveries"].forget(sid)
    if user_id is None:
        return None
    requeued = 0
    if unacknowledged:
        _flush_confirmations()
        table = Notification.__table__
        requeued = rows.requeue(table.c.id.in_(unacknowledged), table.c.received_at.is_(None))
        if requeued and presence.online([user_id]):
            metrics.RESENT_SOCKET_CLOSED.inc(send_pending({user_id}))
    log.info(DISCONNECTED_LOG, user_id, sid, requeued)
    metrics.REQUEUED_SOCKET_CLOSED.inc(requeued)
    return user_id
