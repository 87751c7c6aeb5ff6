"""Corrections to python-engineio (4.15) and python-socketio (5.18) that the service depends on.

Each function names the upstream behaviour it corrects; each has a test that fails
without it (tests/test_library_fixes.py, tests/e2e/test_hardening.py).
"""

import logging
from collections.abc import Callable

import engineio
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

log = logging.getLogger(__name__)


def apply(server: socketio.Server, allow_event: Callable[[str], bool] | None = None) -> None:
    """Apply every correction: the process-wide one, and those of this app's `server`."""
    close_on_malformed_engineio_packets()
    close_without_waiting(server.eio)
    ignore_reserved_client_events(server, allow_event)
    connect_packet_first(server)


def close_on_malformed_engineio_packets() -> None:
    """Turn an undecodable Engine.IO packet into a CLOSE packet.

    python-engineio decodes websocket frames outside its error handling: a
    garbage frame ends the handler without closing the socket, so the Socket.IO
    disconnect handler never runs and the user keeps counting as online (their new
    notifications would be marked DELIVERED to a dead connection) until the ping
    timeout. As a CLOSE packet, the frame closes the connection the normal way.
    """
    original = eio_packet.Packet.decode
    if getattr(original, "closes_on_error", False):
        return

    def decode(self, encoded_packet):
        try:
            return original(self, encoded_packet)
        except ValueError as exc:  # includes binascii.Error from bad base64
            log.info("malformed Engine.IO packet (%s): closing the connection", exc)
            self.packet_type, self.data, self.binary = eio_packet.CLOSE, None, False

    decode.closes_on_error = True
    eio_packet.Packet.decode = decode


def close_without_waiting(eio: engineio.Server) -> None:
    """Make `eio.disconnect(sid)` close the session without waiting for its queue to drain.

    python-engineio's `Server.disconnect` closes a socket with `wait=True`, which
    waits until the CLOSE packet has been taken from the socket's queue. On the
    polling transport only the client's next GET takes it: when none comes, the
    caller waits for ever. That caller is the request itself when a polling POST
    breaks the protocol (a body over the buffer limit, announced by Content-Length
    alone; a client PING or NOOP packet): the POST was never answered, its
    connection stayed in CLOSE_WAIT and its slot of the server's pool was lost
    for good. It is also every server-side close (token expiry, connect deadline,
    rate limit) of a polling client. The CLOSE packet is still queued for a client
    that polls again. (eventlet then reads and discards a refused body before the
    connection's next request: until the client closes, within HTTP_SOCKET_TIMEOUT.)
    """
    if getattr(eio.disconnect, "does_not_wait", False):
        return

    def disconnect(sid=None):
        targets = [sid] if sid is not None else list(eio.sockets)
        for target in targets:
            connection = eio.sockets.get(target)
            if connection is not None:
                connection.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
                eio.sockets.pop(target, None)

    disconnect.does_not_wait = True
    eio.disconnect = disconnect


def ignore_reserved_client_events(
    server: socketio.Server, allow_event: Callable[[str], bool] | None = None
) -> None:
    """Drop client events named `connect` or `disconnect`; optionally police the rest.

    python-socketio dispatches a client's EVENT packet by its name alone, so a
    client that emits "disconnect" runs the server's own disconnect handler
    (its user then counts as offline while the socket stays up, and the per-user
    socket cap no longer counts it), and one that emits "connect" with another
    token runs the connect handler again (joining that user's room too). Those
    names are reserved for the server's own lifecycle: such events are dropped.

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

    python-socketio 5.18 (`Server._handle_connect`) sends CONNECT only after the connect
    handler returned: what the handler emits (`pending_notifications`, `unread_count`),
    and what other green threads emit to the socket's room meanwhile, reach the client
    before it knows it is connected. Node's Socket.IO sends CONNECT before its
    `connection` handler runs; clients without a receive buffer (raw websocket clients,
    some mobile libraries) drop or misread the early events. Here the packets for a
    socket whose connect is being handled are held, sent in order right after CONNECT,
    and dropped when the connect is refused (a refused client is sent no event). Upstream,
    `_handle_connect` would queue sends to a pre-connected sid the same way.
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
