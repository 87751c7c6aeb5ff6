"""Corrections to python-socketio (5.18.1): reserved event names, room index, trimmed environs,
the Admin UI's refused connects, the Redis listening loop, and the packet helpers of acknowledged sends."""

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import socketio
from engineio import packet as eio_packet
from socketio import packet

from app import metrics

log = logging.getLogger(__name__)

LIBRARY = "python-socketio"
WRITTEN_FOR = "5.18.1"

RESERVED_EVENTS = "socketio: client events named connect/disconnect dropped"
TRIMMED_ENVIRONS = "socketio: environs kept without transport keys"
INDEXED_ROOMS = "socketio: rooms indexed per socket"
REDIS_LISTENING = "socketio: Redis listener with fast retries and own channels"
REFUSED_CONNECTS = "socketio: Admin UI told of refused connects"


def apply(server: socketio.Server, allow_event: Callable[[str], bool] | None = None) -> None:
    """Install the corrections of this app's `server` (the room index and the Redis loop are its
    manager's base classes; the Admin UI's is installed with the UI, app/realtime/admin_ui.py)."""
    ignore_reserved_client_events(server, allow_event)
    keep_trimmed_environ(server)


def in_effect(server: socketio.Server) -> list[str]:
    """The names of this module's corrections in effect for `server`."""
    checks = (
        (RESERVED_EVENTS, getattr(server._handle_event, "checks_reserved", False)),
        (TRIMMED_ENVIRONS, isinstance(server.environ, TrimmedEnvirons)),
        (INDEXED_ROOMS, isinstance(server.manager, IndexedRoomsMixin)),
        (REDIS_LISTENING, isinstance(server.manager, ListeningRedisLoop)),
        (REFUSED_CONNECTS, getattr(server._trigger_event, "reports_refused", False)),
    )
    return [name for name, applied in checks if applied]


def ignore_reserved_client_events(
    server: socketio.Server, allow_event: Callable[[str], bool] | None = None
) -> None:
    """Drop client events named `connect` or `disconnect`; optionally police the rest.

    Upstream bug: a client's EVENT packet is dispatched by its name alone, so a client
    that emits "disconnect" runs the server's own disconnect handler (its user then counts
    as offline while the socket stays up), and one that emits "connect" with another token
    runs the connect handler again (joining that user's room too); the upstream fix would
    refuse `reserved_events` in `Server._handle_event`. Such events are dropped here.

    `allow_event(sid)` is asked for every other event; when it says no, the event
    is dropped and the socket disconnected (a client over its event rate limit).
    """
    if getattr(server._handle_event, "checks_reserved", False):
        return
    original = server._handle_event
    reserved = frozenset(server.reserved_events)

    def handle_event(eio_sid, namespace, id, data):
        name = data[0] if isinstance(data, list) and data else None
        sid = server.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        if not isinstance(name, str) or name in reserved:
            log.warning("socket %s sent the reserved or invalid event %r: ignored", sid, name)
            return None
        if allow_event is not None and sid is not None and not allow_event(sid):
            log.warning("socket %s is over its event rate limit: disconnected", sid)
            server.disconnect(sid, namespace=namespace or "/")
            return None
        return original(eio_sid, namespace, id, data)

    handle_event.checks_reserved = True
    server._handle_event = handle_event


# Keys of the WSGI environ that describe the HTTP request as a transport (its body stream,
# the eventlet server's hooks, WSGI flags, the websocket handshake): nothing reads them once
# the socket is open.
TRANSPORT_KEYS = frozenset(
    {
        "HTTP_UPGRADE", "HTTP_CONNECTION", "HTTP_SEC_WEBSOCKET_KEY", "HTTP_SEC_WEBSOCKET_VERSION",
        "HTTP_SEC_WEBSOCKET_EXTENSIONS", "wsgi.version", "wsgi.input", "wsgi.errors",
        "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated",
        "eventlet.input", "eventlet.posthooks", "eventlet.set_idle", "GATEWAY_INTERFACE",
        "SERVER_SOFTWARE", "RAW_PATH_INFO", "headers_raw",
    }
)  # fmt: skip


def trimmed_environ(environ: dict) -> dict:
    """A copy of `environ` without TRANSPORT_KEYS."""
    return {key: value for key, value in environ.items() if key not in TRANSPORT_KEYS}


class TrimmedEnvirons(dict):
    """`server.environ`: each Engine.IO session's WSGI environ, stored without its transport keys."""

    def __setitem__(self, eio_sid, environ) -> None:
        super().__setitem__(eio_sid, trimmed_environ(environ))


def keep_trimmed_environ(server: socketio.Server) -> None:
    """Keep each socket's WSGI environ without the keys of the HTTP transport.

    `server.environ` keeps the environ of each Engine.IO session for the socket's life:
    Flask-SocketIO builds the request context of every event and of the disconnect from it,
    and the Admin UI lists its headers. They read the request line, addresses, scheme,
    headers and Flask-SocketIO's own `flask.app` and `saved_session`, never the body
    stream, eventlet's hooks, the WSGI flags or the websocket handshake headers; stored
    without them, a websocket's copy is about half the size.
    """
    if isinstance(server.environ, TrimmedEnvirons):
        return
    environs = TrimmedEnvirons()
    for eio_sid, environ in server.environ.items():
        environs[eio_sid] = environ
    server.environ = environs


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


def report_refused_connects(server: socketio.Server, admin_namespace: str) -> None:
    """Tell the Admin UI about a connect that the connect handler refused.

    Upstream bug: the instrumentation reports a socket to the UI, and keeps its start
    time, before the connect handler runs; a refused socket never gets a disconnect event,
    so it stays listed, and its start time kept, for as long as the process runs (the
    upstream fix would report `socket_disconnected` for a refused connect in
    `InstrumentedServer`).
    """
    trigger = server._trigger_event  # the instrumented one

    def trigger_event(event, namespace, *args):
        try:
            accepted = trigger(event, namespace, *args)
        except socketio.exceptions.ConnectionRefusedError:
            if event == "connect":
                _refused(server, namespace, args[0], admin_namespace)
            raise
        if event == "connect" and accepted is False:
            _refused(server, namespace, args[0], admin_namespace)
        return accepted

    trigger_event.reports_refused = True
    server._trigger_event = trigger_event


def _refused(server: socketio.Server, namespace: str, sid: str, admin_namespace: str) -> None:
    server.manager._timestamps.pop(sid, None)
    server.emit(
        "socket_disconnected",
        (namespace, sid, "connection refused", datetime.now(UTC).isoformat()),
        namespace=admin_namespace,
    )


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
