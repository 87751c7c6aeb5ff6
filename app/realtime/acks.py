"""The two kinds of socket (contract v2), and what each of this process's sockets was sent.

A client chooses when it connects: with `"ack": true` in its `auth` payload it is an
acknowledging client, and every `new_notification` / `pending_notifications` event it
gets carries an acknowledgement request; its acknowledgement confirms the
notifications (`receivedAt` in the database, see services/confirmations.py). What it
was sent but did not acknowledge is put back to PENDING when the socket closes (see
`delivery.disconnect_socket`), and by the sweeper when it stays unconfirmed too long.

Any other client is a plain client, as every client of the original service: it is
sent the events without an acknowledgement request, one encoded packet shared by all
of them, and a send to it confirms the notification at once (at most once: it is
never sent to that user again).
"""

from collections.abc import Callable, Iterable
from functools import partial

from app import metrics
from app.protocol import NOTIFICATION_EVENTS, PENDING_NOTIFICATIONS
from app.realtime.patches.socketio import EncodedEvent, IndexedRoomsMixin, ack_id


class DeliveryTracker:
    """Per socket of this process: its kind, and what it was sent and has not acknowledged."""

    def __init__(self, confirm: Callable[[Iterable[str]], None]) -> None:
        self._confirm = confirm
        self._acknowledging: dict[str, bool] = {}
        self._unacknowledged: dict[str, set[str]] = {}

    def register(self, sid: str, acknowledging: bool) -> None:
        """A socket is connecting: from now on it is sent notifications, as its kind asks."""
        self._acknowledging[sid] = acknowledging

    def acknowledging(self, sid: str) -> bool | None:
        """The socket's kind; None for a socket that is not (or no longer) registered."""
        return self._acknowledging.get(sid)

    def sent(self, sid: str, notification_ids: Iterable[str]) -> None:
        """`sid` (acknowledging) was sent these notifications with an acknowledgement request."""
        self._unacknowledged.setdefault(sid, set()).update(notification_ids)

    def confirmed(self, sid: str, notification_ids: list[str], *_ack_args) -> None:
        """The client of `sid` acknowledged these notifications."""
        pending = self._unacknowledged.get(sid)
        if pending is not None:
            pending.difference_update(notification_ids)
        self._confirm(notification_ids)

    def acknowledged(self, sid: str, event: str, data, *ack_args) -> None:
        """The client of `sid` acknowledged the `event` it was sent with `data`: confirmed, and counted."""
        self.confirmed(sid, _ids(event, data), *ack_args)
        if event == PENDING_NOTIFICATIONS:
            metrics.acknowledged([n["createdAt"] for n in data], live=False)
        else:
            metrics.acknowledged([data["createdAt"]], live=True)

    def sent_plain(self, notification_ids: Iterable[str]) -> None:
        """These notifications went to a plain socket: received, as far as it will ever tell."""
        self._confirm(notification_ids)

    def forget(self, sid: str) -> list[str]:
        """The socket closed: stop sending to it; what it never acknowledged."""
        self._acknowledging.pop(sid, None)
        return list(self._unacknowledged.pop(sid, ()))


def _ids(event: str, data) -> list[str]:
    if event == PENDING_NOTIFICATIONS:
        return [n["id"] for n in data]
    return [data["id"]]


class TrackingManagerMixin(IndexedRoomsMixin):
    """Sends notification events by socket kind: with an ack request, or one shared packet.

    It sits below python-socketio's pub/sub managers in the method order, so it
    also handles the events that reach this process through the message queue.
    A socket that is not registered (refused, or already closing) gets nothing: a
    send that reaches a closing socket is exactly what would otherwise be lost.
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
                # What python-socketio's Manager.emit does per socket when a callback is given.
                tracker.sent(sid, ids)
                answered = partial(tracker.acknowledged, sid, event, data)
                encoded.send(server, eio_sid, ack_id(self, sid, answered))
            else:
                encoded.send(server, eio_sid)  # one packet object for every plain socket of the emit
                sent_plain = True
        if sent_plain:
            tracker.sent_plain(ids)
        if sockets:
            if event == PENDING_NOTIFICATIONS:
                metrics.SENT_PENDING.inc(sockets * len(ids))
            else:
                metrics.SENT_LIVE.inc(sockets)
        return None


class TrackingManager(TrackingManagerMixin):
    """The single-process client manager, with the two kinds of notification sends."""
