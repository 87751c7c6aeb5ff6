"""Corrections to python-socketio's (5.18.1) client managers: a room index per socket, the Redis
listening loop, and the packet helpers of acknowledged sends (used by app/realtime/transport.py)."""

import logging
import time
from collections.abc import Callable

import socketio
from engineio import packet as eio_packet
from socketio import packet

from app import metrics

log = logging.getLogger(__name__)

PACKAGE = "python-socketio"
WRITTEN_FOR = "5.18.1"

INDEXED_ROOMS = "socketio: rooms indexed per socket"
REDIS_LISTENING = "socketio: Redis listener with fast retries and own channels"


def in_effect(server: socketio.Server) -> list[str]:
    """The names of this module's corrections in effect for `server` (its manager's base classes)."""
    checks = (
        (INDEXED_ROOMS, isinstance(server.manager, IndexedRoomsMixin)),
        (REDIS_LISTENING, isinstance(server.manager, ListeningRedisLoop)),
    )
    return [name for name, applied in checks if applied]


class IndexedRoomsMixin(socketio.Manager):
    """A client manager that keeps, per socket, the rooms it is in.

    Upstream limitation: `basic_disconnect` finds a disconnecting socket's rooms by
    scanning every room of the namespace (one private room per user and per socket), so
    disconnects are quadratic in the number of connections; the upstream fix would be this
    index in `BaseManager`. With it, each disconnect costs a few dict operations.
    """

    def _index(self) -> dict[tuple[str, str], set]:
        # initialize() runs on the first connection; be ready before it too
        if not hasattr(self, "_rooms_of"):
            self._rooms_of = {}
        return self._rooms_of

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._index().setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        rooms = self._index().get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._index()[(namespace, sid)]

    def get_rooms(self, sid, namespace):
        """The rooms a client is in (without the namespace-wide one)."""
        return [room for room in self._index().get((namespace, sid), ()) if room is not None]

    def basic_disconnect(self, sid, namespace, **kwargs):
        """The library's `basic_disconnect`, with the room scan replaced by the index."""
        if namespace not in self.rooms:
            return
        for room in list(self._index().get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            waiting = pending.get(namespace)
            if waiting and sid in waiting:
                waiting.remove(sid)
                if not waiting:
                    del pending[namespace]


class ListeningRedisLoop(socketio.RedisManager):
    """The Redis manager's listening loop, on the channels `listen_channels()` names.

    The library's loop backs off to a minute between reconnects and listens on the shared
    channel only; this one retries every RETRY_SECONDS, listens on every channel the
    subclass names, and tells whether it is subscribed right now (`listening`).
    """

    listening = False
    RETRY_SECONDS = 1.0
    _listener = None  # the PubSub the loop reads (publishing may replace self.pubsub)

    def listen_channels(self) -> list[str]:
        """The channels to subscribe to (the shared one first)."""
        return [self.channel]

    def subscribed(self, channels: str) -> None:
        """Called once subscribed to `channels` (comma-separated)."""

    def start_listening(self) -> None:
        """Start the subscriber now rather than at the first client connection."""
        server = self.server
        if server is not None and not server.manager_initialized:
            server.manager_initialized = True
            self.initialize()

    def _redis_listen_with_retries(self):
        while True:
            try:
                self._redis_connect()
                self._listener = self.pubsub
                self._listener.subscribe(*self.listen_channels())
                self.listening = True
                self.subscribed(", ".join(self.listen_channels()))
                yield from self._listener.listen()
            except Exception as exc:  # noqa: BLE001  (any failure: reconnect)
                metrics.REDIS_ERRORS_QUEUE.inc()
                if self.listening:
                    log.warning("message queue: lost the subscription (%s); retrying", exc)
                self.listening = False
                time.sleep(self.RETRY_SECONDS)

    def _listen(self):
        for message in self._redis_listen_with_retries():
            if message["type"] == "message" and "data" in message:
                self.arrived(message["channel"], message["data"])
                yield message["data"]

    def arrived(self, channel: bytes, data) -> None:
        """Called with each message before the library handles it."""


class EncodedEvent:
    """A Socket.IO EVENT packet encoded once, for any ack id.

    The library encodes the whole packet per socket when each has its own ack id (and
    first walks the data looking for binary parts). The encoding is the packet type, the
    namespace, the ack id, then the JSON: only the id differs between sockets.
    """

    def __init__(self, packet_class: type, namespace: str, data: list) -> None:
        # The library's own encoding of a packet without id and data: type and namespace.
        # binary=False: notifications are JSON from the database, never bytes.
        self._head = packet_class(packet.EVENT, namespace=namespace, binary=False).encode()
        self._json = packet_class.json.dumps(data, separators=(",", ":"))
        self._shared = None

    def with_id(self, ack_id: int | None) -> str:
        return self._head + self._json if ack_id is None else f"{self._head}{ack_id}{self._json}"

    def send(self, server: socketio.Server, eio_sid: str, ack_id: int | None = None) -> None:
        """To one Engine.IO session: with `ack_id`, or the one packet shared by every send without."""
        if ack_id is not None:
            message = eio_packet.Packet(eio_packet.MESSAGE, data=self.with_id(ack_id))
        else:
            if self._shared is None:
                self._shared = eio_packet.Packet(eio_packet.MESSAGE, data=self.with_id(None))
            message = self._shared
        server._send_eio_packet(eio_sid, message)


def ack_id(manager: socketio.Manager, sid: str, callback: Callable) -> int:
    """An acknowledgement id for a send to `sid`, calling `callback` when the client answers."""
    return manager._generate_ack_id(sid, callback)
