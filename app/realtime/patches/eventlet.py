"""Corrections to eventlet (0.41.3): smaller buffers, deadlines on request headers, TCP_NODELAY,
plain request headers parsed without the email parser, and websocket compression only when
asked, above a size threshold.

Only where the server runs on eventlet (not under `flask` commands, which run without it).
"""

import email.parser
import http.client
import re
import socket
from http.client import HTTPMessage

import socketio
from engineio import Server as EngineIOServer

from app.realtime.patches.eventlet_websocket import DETACH, detach

PACKAGE = "eventlet"
WRITTEN_FOR = "0.41.3"

# Bytes of the read buffer eventlet's WSGI server gives each connection (its default: 8 KiB).
HTTP_READ_BUFFER = 2048
# Bytes of each connection's HTTP write buffer (eventlet's default: 16 KiB, allocated for the
# connection's life; a websocket writes its frames to the socket itself and never uses it).
HTTP_WRITE_BUFFER = 2048
SMALL_READ_BUFFERS = "eventlet: 2 KiB read buffers"
REQUEST_DEADLINES = "eventlet: request line and header deadlines with 2 KiB write buffers and TCP_NODELAY"
COMPRESSION = "eventlet: websocket compression only as configured"
RELEASED_HTTP_STATE = "eventlet: HTTP buffers and headers released once a websocket is up"
PLAIN_HEADERS = "eventlet: plain request headers parsed without the email parser"
# The request headers of a connection that became a websocket (read by no one after the switch).
EMPTY_HEADERS = HTTPMessage()


def apply(server: socketio.Server, compression: bool = False, threshold: int = 0) -> None:
    """Install what is process-wide and this server's compression (the request deadlines are a
    protocol class that `serve` passes)."""
    if server.eio.async_mode == "eventlet":
        small_read_buffers()
        plain_headers_parsed_directly()
        configure_compression(server.eio, compression, threshold)


def in_effect(server: socketio.Server) -> list[str]:
    """The names of this module's corrections in effect for `server`."""
    if server.eio.async_mode != "eventlet":
        return []
    import eventlet.wsgi

    protocol = eventlet.wsgi.HttpProtocol
    found = [SMALL_READ_BUFFERS] if protocol.rbufsize == HTTP_READ_BUFFER else []
    if hasattr(protocol, "_read_request_line") and hasattr(protocol, "parse_request"):
        found.append(REQUEST_DEADLINES)
    if hasattr(protocol, "get_environ"):  # where `deadline_protocol` hooks the release
        found.append(RELEASED_HTTP_STATE)
    if getattr(server.eio._async["websocket"], "configured_compression", False):
        found.append(COMPRESSION)
    if getattr(http.client.parse_headers, "original", None) is not None:
        found.append(PLAIN_HEADERS)
    return found


def small_read_buffers() -> None:
    """Give each HTTP connection a 2 KiB read buffer instead of 8 KiB.

    `HttpProtocol.setup` wraps every accepted connection in a `BufferedReader` of
    io.DEFAULT_BUFFER_SIZE (8 KiB), allocated up front and kept for the life of the
    connection. A websocket reads its frames from the socket itself, so after the
    handshake the read buffer only holds memory (filled by the request's headers, so
    resident). With 2 KiB, a request line and headers of usual size are still read in
    one `recv`, and a larger read (a body) goes straight to the socket (BufferedReader
    bypasses a buffer smaller than the read).

    The write buffer is set in `deadline_protocol` (`HTTP_WRITE_BUFFER`), together with
    TCP_NODELAY, which lets a response larger than it leave in two sends without waiting.
    """
    import eventlet.wsgi

    eventlet.wsgi.HttpProtocol.rbufsize = HTTP_READ_BUFFER


def deadline_protocol(idle_timeout: float, header_timeout: float, pool=None) -> type:
    """eventlet's HTTP protocol with a deadline on each request's line and headers.

    Upstream limitation: eventlet's timeouts apply to each read alone, so a client that
    sends a byte of its headers every few seconds holds its connection (and a slot of
    MAX_CONNECTIONS) for ever; the upstream fix would be an overall header timeout in
    `eventlet.wsgi.server`. Here the request line must be complete within idle + header
    timeout of the previous request (or of the connect), and the headers within the header
    timeout after it; past that, the connection is closed as eventlet closes a timed-out
    one. The body and the response (a long poll, a websocket) have no overall deadline,
    only the per-read socket timeout. Its write buffer is 2 KiB, with TCP_NODELAY.

    With the server's `pool` (from eventlet_websocket.connection_pool), a request can take its
    connection out of the server (`eventlet_websocket.DETACH` in its environ), keeping its slot.
    """
    import eventlet
    import eventlet.wsgi

    class DeadlineHttpProtocol(eventlet.wsgi.HttpProtocol):
        wbufsize = HTTP_WRITE_BUFFER
        MessageClass = RequestHeaders  # parsed by `plain_headers_parsed_directly` when plain

        def setup(self):
            # Small writes leave at once, as in Node: a response larger than the write buffer
            # goes out in two sends, and the second must not wait for the first's ACK.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().setup()

        def _read_request_line(self):  # eventlet's (private) read of the request line
            with eventlet.Timeout(idle_timeout + header_timeout, TimeoutError("no request in time")):
                return super()._read_request_line()

        def parse_request(self):
            with eventlet.Timeout(header_timeout, TimeoutError("headers not complete in time")):
                return super().parse_request()

        def get_environ(self):
            environ = super().get_environ()
            set_idle = environ["eventlet.set_idle"]

            def switched_to_websocket():  # eventlet's websocket calls it once its handshake is sent
                set_idle()
                release_http_state(self)

            environ["eventlet.set_idle"] = switched_to_websocket
            if pool is not None:
                environ[DETACH] = lambda: (detach(self, pool), pool.release_slot)
            return environ

    return DeadlineHttpProtocol


class RequestHeaders(HTTPMessage):
    """The headers of a request to this server: the class `plain_headers_parsed_directly` knows."""


# A header line's name as the email parser accepts it (its `headerRE`): printable ASCII but ':'.
_HEADER_NAME = re.compile(rb"[!-9;-~]+")


def plain_headers_parsed_directly() -> None:
    """Parse this server's request headers without the email parser when every line is plain.

    The standard library's HTTP server reads the header lines, joins them and hands them to
    the email parser, which costs most of a request line's and its headers' parsing (3 % of
    a connect's and 5 % of a POST's busy samples in this service's profiles). A request whose
    header lines are all `Name: value` (a name the email parser accepts, no folded
    continuation, no lone CR) is read into the same `HTTPMessage` directly: the same
    (name, value) pairs, the value stripped of leading blanks as the parser strips it. Any
    other request, and every caller but this server's protocol (`RequestHeaders`), goes the
    standard way. The line and header-count limits are the standard reader's own.
    """
    standard = getattr(http.client.parse_headers, "original", http.client.parse_headers)
    read_lines = getattr(http.client, "_read_headers", None)
    if read_lines is None:  # another Python: leave it as it is
        return

    def parse_headers(fp, _class=HTTPMessage):
        if _class is not RequestHeaders:
            return standard(fp, _class)
        lines = read_lines(fp)
        return _plain_headers(lines) or email.parser.Parser(_class=_class).parsestr(
            b"".join(lines).decode("iso-8859-1")
        )

    parse_headers.original = standard
    http.client.parse_headers = parse_headers


def _plain_headers(lines: list[bytes]) -> RequestHeaders | None:
    """The headers of `lines` (the standard reader's, ending with the blank line) when all are plain."""
    if not lines or lines[-1] not in (b"\r\n", b"\n"):
        return None
    headers = RequestHeaders()
    pairs = headers._headers
    for line in lines[:-1]:
        name, colon, value = line.partition(b":")
        value = value[:-2] if value.endswith(b"\r\n") else value[:-1]
        if not colon or b"\r" in value or not _HEADER_NAME.fullmatch(name):
            return None
        pairs.append((name.decode("ascii"), value.lstrip(b" \t").decode("iso-8859-1")))
    headers.set_payload("")
    return headers


def release_http_state(protocol) -> None:
    """Free what a connection holds for HTTP once it is a websocket.

    Upstream limitation: eventlet's HTTP protocol keeps the connection's read and write
    buffers (`rfile`, `wfile`) and the request's parsed headers for as long as its
    request runs, which for a websocket is the life of the connection, though the
    websocket reads and writes its socket itself (the upstream fix would release them in
    `WebSocketWSGI.__call__` once the handshake is sent). Closing the buffered files frees
    their buffers and leaves the socket open (the socket's own close comes when the
    websocket ends); the headers become an empty set, so that nothing
    reads a stale request after the switch. Called by `deadline_protocol`'s
    `eventlet.set_idle`, which eventlet's websocket calls right after its handshake.
    """
    protocol.rfile.close()
    protocol.wfile.close()
    protocol.headers = EMPTY_HEADERS


def configure_compression(eio: EngineIOServer, enabled: bool, threshold: int) -> None:
    """Make `eio`'s websockets negotiate permessage-deflate only when `enabled`, then above `threshold`.

    eventlet's websocket server accepts `permessage-deflate` from every client that offers
    it (every browser, Node's `socket.io-client`) and then compresses every message, however
    small, with a zlib context kept for the life of the socket in each direction. Node's
    Socket.IO server turns compression off by default for that reason, and so does this one.
    WEBSOCKET_COMPRESSION=1 turns it on; messages under WEBSOCKET_COMPRESSION_THRESHOLD bytes
    then go uncompressed (RFC 7692 lets any message go without the compressed bit), as
    Node's `ws` does. It overrides the handshake (`_negotiate_permessage_deflate`,
    `_handle_hybi_request`) and the frame writer (`RFC6455WebSocket._pack_message`).
    """
    from eventlet.websocket import RFC6455WebSocket

    class ThresholdDeflateWebSocket(RFC6455WebSocket):
        """A compressing websocket that sends messages under `threshold` bytes as they are."""

        def _pack_message(self, message, masked=False, continuation=False, final=True, control_code=None):
            size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8"))
            if size >= threshold or continuation or control_code:
                return super()._pack_message(message, masked, continuation, final, control_code)
            extensions, self.extensions = self.extensions, {}  # no compressor for this one
            try:
                return super()._pack_message(message, masked, continuation, final, control_code)
            finally:
                self.extensions = extensions

    base = eio._async["websocket"]

    class WebSocketWSGI(base):
        """engineio's eventlet websocket handshake, with compression as configured."""

        configured_compression = True

        def _negotiate_permessage_deflate(self, extensions):
            return super()._negotiate_permessage_deflate(extensions) if enabled else None

        def _handle_hybi_request(self, environ):
            websocket = super()._handle_hybi_request(environ)
            if websocket.extensions.get("permessage-deflate") is not None:
                websocket.__class__ = ThresholdDeflateWebSocket
            return websocket

    # engineio looks its websocket class up on the server instance: this server only.
    eio._async = {**eio._async, "websocket": WebSocketWSGI}
