"""Corrections to eventlet's WSGI server (0.41.3): a smaller read buffer, deadlines on request headers.

Both touch `eventlet.wsgi.HttpProtocol`, and only where the server runs on eventlet (not
under `flask` commands, which run without it).
"""

import socketio

LIBRARY = "eventlet"
WRITTEN_FOR = "0.41.3"

# Bytes of the read buffer eventlet's WSGI server gives each connection (its default: 8 KiB).
HTTP_READ_BUFFER = 2048
SMALL_READ_BUFFERS = "eventlet: 2 KiB read buffers"
REQUEST_DEADLINES = "eventlet: request line and header deadlines"


def apply(server: socketio.Server) -> None:
    """Install what is process-wide (the request deadlines are a protocol class that `serve` passes)."""
    if server.eio.async_mode == "eventlet":
        small_read_buffers()


def in_effect(server: socketio.Server) -> list[str]:
    """The names of this module's corrections in effect for `server`."""
    if server.eio.async_mode != "eventlet":
        return []
    import eventlet.wsgi

    protocol = eventlet.wsgi.HttpProtocol
    found = [SMALL_READ_BUFFERS] if protocol.rbufsize == HTTP_READ_BUFFER else []
    if hasattr(protocol, "_read_request_line") and hasattr(protocol, "parse_request"):
        found.append(REQUEST_DEADLINES)
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

    The write buffer stays eventlet's: with a smaller one, a response over its size would
    leave in two sends (headers, then body), and without TCP_NODELAY the body could wait
    for the client's delayed ACK of the headers.
    """
    import eventlet.wsgi

    eventlet.wsgi.HttpProtocol.rbufsize = HTTP_READ_BUFFER


def deadline_protocol(idle_timeout: float, header_timeout: float) -> type:
    """eventlet's HTTP protocol with a deadline on each request's line and headers.

    Upstream limitation: eventlet's timeouts apply to each read alone, so a client that
    sends a byte of its headers every few seconds holds its connection (and a slot of
    MAX_CONNECTIONS) for ever; the upstream fix would be an overall header timeout in
    `eventlet.wsgi.server`. Here the request line must be complete within idle + header
    timeout of the previous request (or of the connect), and the headers within the header
    timeout after it; past that, the connection is closed as eventlet closes a timed-out
    one. The body and the response (a long poll, a websocket) have no overall deadline,
    only the per-read socket timeout.
    """
    import eventlet
    import eventlet.wsgi

    class DeadlineHttpProtocol(eventlet.wsgi.HttpProtocol):
        def _read_request_line(self):  # eventlet's (private) read of the request line
            with eventlet.Timeout(idle_timeout + header_timeout, TimeoutError("no request in time")):
                return super()._read_request_line()

        def parse_request(self):
            with eventlet.Timeout(header_timeout, TimeoutError("headers not complete in time")):
                return super().parse_request()

    return DeadlineHttpProtocol
