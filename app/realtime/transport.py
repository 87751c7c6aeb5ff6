"""The delivery core's transport: the only code that sends notifications through python-socketio.

`Transport` (one process) and `QueueTransport` (several, through the Redis message queue of
app/realtime/queue.py) take each send as a value: an event, (user, payload) items, and a
`Route`. Below them, `TrackingManagerMixin` sends a notification event to each socket of this
process as its kind asks (the contract's acknowledging and plain clients):

- an acknowledging socket gets it with an acknowledgement request, and the core's tracker
  records what it was sent until it answers;
- plain sockets share one encoded packet, and a send to one confirms the notification.

An `unread_count` is encoded once per emit as well, for every socket of the user: it goes
out after each create, to every user of a fan-out.

A socket that is not registered (refused, or already closing) gets nothing: a send that
reaches a closing socket is exactly what would otherwise be lost.
"""

from collections.abc import Sequence
from functools import partial

import socketio

from app import metrics
from app.delivery import Route, Tracker
from app.delivery.confirmations import notification_ids
from app.protocol import NAMESPACE, NOTIFICATION_EVENTS, PENDING_NOTIFICATIONS, UNREAD_COUNT, user_room
from app.realtime.patches.socketio_manager import EncodedEvent, IndexedRoomsMixin, ack_id


class TrackingManagerMixin(IndexedRoomsMixin):
    """Sends notification events by socket kind: with an ack request, or one shared packet.

    It sits below python-socketio's pub/sub managers in the method order, so it also
    handles the events that reach this process through the message queue.
    """

    tracker: Tracker | None = None  # the core's (app/__init__.py)

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        tracker = self.tracker
        if event == UNREAD_COUNT and callback is None and skip_sid is None:
            return self._emit_shared(event, data, namespace, to or room)
        if tracker is None or callback is not None or event not in NOTIFICATION_EVENTS:
            return super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
            )
        ids = notification_ids(event, data)
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        server = self.server
        encoded = None  # the event's packet without an ack id: built once per emit
        sent_plain = False
        sockets = 0
        for sid, eio_sid in list(self.get_participants(namespace, to or room)):
            acknowledging = tracker.acknowledging(sid)
            if sid in skip or acknowledging is None:
                continue
            sockets += 1
            if encoded is None:
                encoded = EncodedEvent(server.packet_class, namespace, [event, data])
            if acknowledging:
                tracker.sent(sid, ids)
                answered = partial(tracker.acknowledged, sid, event, data)
                encoded.send(server, eio_sid, ack_id(self, sid, answered))
            else:
                encoded.send(server, eio_sid)  # one packet object for every plain socket of the emit
                sent_plain = True
        if sent_plain:
            tracker.sent_plain(ids)
        _count(event, sockets, len(ids))
        return None

    def _emit_shared(self, event, data, namespace, to) -> None:
        """`event` to every socket of `to` (a room or a socket), one packet encoded once for all."""
        encoded = None
        for _sid, eio_sid in list(self.get_participants(namespace, to)):
            if encoded is None:
                encoded = EncodedEvent(self.server.packet_class, namespace, [event, data])
            encoded.send(self.server, eio_sid)


def _count(event: str, sockets: int, notifications: int) -> None:
    if not sockets:
        return
    if event == PENDING_NOTIFICATIONS:
        metrics.SENT_PENDING.inc(sockets * notifications)
    else:
        metrics.SENT_LIVE.inc(sockets)


class TrackingManager(TrackingManagerMixin):
    """The single-process client manager, with the two kinds of notification sends."""


class Transport:
    """One process: every send goes to the user's room on this process's server; routes are moot."""

    routed = False

    def __init__(self, server: socketio.Server) -> None:
        self.server = server

    def send(self, event: str, items: Sequence[tuple[str, object]], route: Route) -> None:
        """Send each (user, payload) to that user's sockets."""
        for user_id, payload in items:
            self.server.emit(event, payload, to=user_room(user_id), namespace=NAMESPACE)

    def send_to_socket(self, sid: str, event: str, payload: object) -> None:
        """Send `payload` to socket `sid` of this process."""
        self.server.emit(event, payload, to=sid, namespace=NAMESPACE)

    def join(self, sid: str, user_id: str) -> None:
        """Socket `sid` now gets what is sent to `user_id`."""
        self.server.enter_room(sid, user_room(user_id), namespace=NAMESPACE)

    def leave(self, sid: str, user_id: str) -> None:
        """Socket `sid` no longer gets what is sent to `user_id`."""
        self.server.leave_room(sid, user_room(user_id), namespace=NAMESPACE)

    def pause(self) -> None:
        """Let the sockets' writers run before going on."""
        self.server.sleep(0)


class QueueTransport(Transport):
    """Several processes: sends are routed on the Redis message queue (app/realtime/queue.py)."""

    routed = True

    def send(self, event: str, items: Sequence[tuple[str, object]], route: Route) -> None:
        """Send each (user, payload) here and to the processes `route` names, in one Redis round trip."""
        self.server.manager.emit_routed(event, items, route)
