"""Corrections to python-socketio (5.18.1) in its server: reserved event names, the CONNECT packet
first, connects handled on their own green thread, trimmed environs, the Admin UI's refused connects
(its client managers: socketio_manager.py)."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import socketio
from socketio import packet as sio_packet

from app.realtime.patches.eventlet_websocket import DETACH

log = logging.getLogger(__name__)

PACKAGE = "python-socketio"
WRITTEN_FOR = "5.18.1"

RESERVED_EVENTS = "socketio: client events named connect/disconnect dropped"
CONNECT_FIRST = "socketio: nothing reaches a socket before its CONNECT packet"
TRIMMED_ENVIRONS = "socketio: environs kept without transport keys"
CONNECT_THREAD = "socketio: connects handled on their own green thread"
REFUSED_CONNECTS = "socketio: Admin UI told of refused connects"


def apply(server: socketio.Server, allow_event: Callable[[str], bool] | None = None) -> None:
    """Install the corrections of this app's `server` (the Admin UI's is installed with the UI,
    app/realtime/admin_ui.py)."""
    ignore_reserved_client_events(server, allow_event)
    connect_packet_first(server)
    if server.eio.async_mode == "eventlet":
        connect_on_own_green_thread(server)
    keep_trimmed_environ(server)


def in_effect(server: socketio.Server) -> list[str]:
    """The names of this module's corrections in effect for `server`."""
    checks = (
        (RESERVED_EVENTS, getattr(server._handle_event, "checks_reserved", False)),
        (CONNECT_FIRST, getattr(server._handle_connect, "holds_packets", False)),
        (CONNECT_THREAD, getattr(server._handle_connect, "own_green_thread", False)),
        (TRIMMED_ENVIRONS, isinstance(server.environ, TrimmedEnvirons)),
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


def connect_packet_first(server: socketio.Server) -> None:
    """Send nothing to a connecting socket before its namespace CONNECT packet.

    Upstream bug: `Server._handle_connect` sends CONNECT only after the connect handler
    returned, so what the handler emits (`pending_notifications`, `unread_count`), and what
    other green threads emit to the socket's room meanwhile, reach the client before it knows
    it is connected; the upstream fix would queue sends to a pre-connected sid in
    `_handle_connect`, as Node's Socket.IO sends CONNECT before its `connection` handler runs.
    Clients without a receive buffer (raw websocket clients, some mobile libraries) drop or
    misread the early events. Here the packets for a socket whose connect is being handled are
    held, sent in order right after CONNECT, and dropped when the connect is refused.
    """
    if getattr(server._handle_connect, "holds_packets", False):
        return
    held: dict[str, list] = {}  # eio sid -> Engine.IO packets waiting for CONNECT
    handle_connect, send_packet = server._handle_connect, server._send_packet
    send_eio_packet = server._send_eio_packet
    answers = (sio_packet.CONNECT, sio_packet.CONNECT_ERROR)

    def holding_handle_connect(eio_sid, namespace, data):
        owner = eio_sid not in held
        if owner:
            held[eio_sid] = []
        try:
            return handle_connect(eio_sid, namespace, data)
        finally:
            if owner:
                held.pop(eio_sid, None)  # not connected (an error in the handler): dropped

    def answer_then_release(eio_sid, pkt):
        waiting = held.pop(eio_sid, None) if pkt.packet_type in answers else None
        send_packet(eio_sid, pkt)
        if waiting and pkt.packet_type == sio_packet.CONNECT:
            for eio_pkt in waiting:
                send_eio_packet(eio_sid, eio_pkt)

    def hold_until_connected(eio_sid, eio_pkt):
        waiting = held.get(eio_sid) if held else None
        if waiting is None:
            return send_eio_packet(eio_sid, eio_pkt)
        waiting.append(eio_pkt)
        return None

    holding_handle_connect.holds_packets = True
    server._handle_connect = holding_handle_connect
    server._send_packet = answer_then_release
    server._send_eio_packet = hold_until_connected


def connect_on_own_green_thread(server: socketio.Server) -> None:
    """Run each namespace CONNECT on a green thread of its own, which the reader waits for.

    Upstream limitation: the CONNECT packet is handled by the green thread that reads the
    websocket, the one that then waits for the client's packets for the life of the
    connection. The connect handler's calls (the request context, the token, the rate
    limits, the database) reach deep into its Python frame stack: on Python 3.11+, each
    greenlet has its own frame stack, whose pages, once touched, stay resident as long as the
    greenlet lives, for every idle socket (the upstream fix would be none in the
    library: it is the cost of a greenlet per connection). On a green thread that ends with
    the connect, they are freed at once; the reader waits for it, so packets are still
    handled one after the other, in order. Only on eventlet (`apply`). It matters for the
    websockets eventlet's reader serves (compressed ones); the others are read from the hub
    by green threads that end anyway (patches/eventlet_websocket.py).
    """
    if getattr(server._handle_connect, "own_green_thread", False):
        return
    import eventlet

    handle_connect = server._handle_connect

    def handle_connect_on_own_green_thread(eio_sid, namespace, data):
        return eventlet.spawn(handle_connect, eio_sid, namespace, data).wait()

    handle_connect_on_own_green_thread.own_green_thread = True
    handle_connect_on_own_green_thread.holds_packets = getattr(handle_connect, "holds_packets", False)
    server._handle_connect = handle_connect_on_own_green_thread


# Keys of the WSGI environ that describe the HTTP request as a transport (its body stream,
# the eventlet server's hooks, WSGI flags, the websocket handshake): nothing reads them once
# the socket is open.
TRANSPORT_KEYS = frozenset(
    {
        "HTTP_UPGRADE", "HTTP_CONNECTION", "HTTP_SEC_WEBSOCKET_KEY", "HTTP_SEC_WEBSOCKET_VERSION",
        "HTTP_SEC_WEBSOCKET_EXTENSIONS", "wsgi.version", "wsgi.input", "wsgi.errors",
        "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated",
        "eventlet.input", "eventlet.posthooks", "eventlet.set_idle", "GATEWAY_INTERFACE",
        "SERVER_SOFTWARE", "RAW_PATH_INFO", "headers_raw", DETACH,
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
