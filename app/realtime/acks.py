"""Which notifications each socket of this process has confirmed receiving.

Notifications go out with a Socket.IO acknowledgement request, one packet per
socket. A client acknowledges by answering the event (python-socketio clients
do so by returning from the handler; browser clients call the ack function). When
a socket disconnects, what it was sent but did not acknowledge may never have
reached it (sent while the client was already leaving, or over a dead TCP
connection): the disconnect handler puts those rows back to PENDING, so they
are sent again when the user connects (see `notifications.disconnect_socket`).

Clients that never acknowledge are not penalised forever: a send older than
`grace` seconds counts as received.
"""

import time
from functools import partial

from socketio import packet

from app.protocol import NOTIFICATION_EVENTS, PENDING_NOTIFICATIONS
from app.realtime.rooms import IndexedRoomsMixin


class DeliveryTracker:
    """Unacknowledged sends per socket: sid -> {notification id: time sent}."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._unconfirmed: dict[str, dict[str, float]] = {}

    def sent(self, sid: str, notification_ids: list[str]) -> None:
        """Record that `sid` was sent these notifications and asked to acknowledge them."""
        now = time.monotonic()
        pending = self._unconfirmed.setdefault(sid, {})
        # Entries are in the order they were sent: drop the ones past their grace period
        # from the front (what a client that never acknowledges leaves behind).
        while pending:
            oldest = next(iter(pending))
            if now - pending[oldest] < self.grace:
                break
            del pending[oldest]
        for notification_id in notification_ids:
            pending[notification_id] = now

    def confirmed(self, sid: str, notification_ids: list[str], *_ack_args) -> None:
        """The client of `sid` acknowledged these notifications."""
        pending = self._unconfirmed.get(sid)
        if pending is not None:
            for notification_id in notification_ids:
                pending.pop(notification_id, None)

    def forget(self, sid: str) -> list[str]:
        """Stop tracking `sid`; the ids it was sent within the grace period and never confirmed."""
        pending = self._unconfirmed.pop(sid, {})
        now = time.monotonic()
        return [k for k, t in pending.items() if now - t < self.grace]


def _ids(event: str, data) -> list[str]:
    if event == PENDING_NOTIFICATIONS:
        return [n["id"] for n in data]
    return [data["id"]]


class TrackingManagerMixin(IndexedRoomsMixin):
    """Sends notification events one socket at a time, each with an ack request.

    It sits below python-socketio's pub/sub managers in the method order, so it
    also handles the events that reach this process through the message queue.
    """

    tracker: DeliveryTracker | None = None

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs):
        tracker = self.tracker
        if tracker is None or callback is not None or event not in NOTIFICATION_EVENTS:
            return super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to, **kwargs
            )
        ids = _ids(event, data)
        skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        # What python-socketio's Manager.emit does per socket when a callback is given,
        # without resolving each socket again as a room of its own.
        server = self.server
        for sid, eio_sid in list(self.get_participants(namespace, to or room)):
            if sid in skip:
                continue
            tracker.sent(sid, ids)
            ack_id = self._generate_ack_id(sid, partial(tracker.confirmed, sid, ids))
            server._send_packet(
                eio_sid, server.packet_class(packet.EVENT, namespace=namespace, data=[event, data], id=ack_id)
            )
        return None


class TrackingManager(TrackingManagerMixin):
    """The single-process client manager, with acknowledged notification sends."""
