"""Less memory per idle websocket: corrections to eventlet (0.41), python-engineio (4.15) and
python-socketio (5.18).

An idle Socket.IO websocket costs what the stack keeps for it between pings; these
corrections take out what is kept for nothing. Each one says what the library does, what
is done instead, what it saves (scenario S2 of bench/, idle sockets on one process;
tracemalloc and RSS of the server) and the version it was written against; a version
whose internals differ is left alone. Tests: tests/test_socket_memory.py and
tests/e2e/test_socket_memory.py.

Together (S2 on SQLite, RSS after the hold, median of 3 runs): 66.6 -> 56.7 KiB a socket
at 2,000 sockets, 66.5 -> 56.5 KiB at 10,000.
"""

import heapq
import itertools
import logging
import threading
import time

import engineio
import socketio
from engineio import packet as eio_packet
from engineio import socket as eio_socket

log = logging.getLogger(__name__)

# Bytes of the read buffer eventlet's WSGI server gives each connection (its default: 8 KiB).
HTTP_READ_BUFFER = 2048
# Pings sent by the scheduler before it lets other green threads run.
PINGS_PER_TURN = 200


def apply(server: socketio.Server) -> None:
    """Apply every correction: the process-wide ones, and those of this app's `server`.

    The eventlet ones only where the server runs on eventlet (not under `flask` commands).
    """
    if server.eio.async_mode == "eventlet":
        small_read_buffers()
    one_ping_scheduler(server.eio)
    keep_trimmed_environ(server)


def _version(module) -> tuple[int, ...]:
    from importlib.metadata import version

    try:
        return tuple(int(part) for part in version(module).split(".")[:2])
    except (ValueError, LookupError):
        return ()


def small_read_buffers() -> None:
    """Give each HTTP connection a 2 KiB read buffer instead of 8 KiB.

    eventlet's WSGI server (`HttpProtocol.setup`, eventlet 0.41) wraps every accepted
    connection in a `BufferedReader` of io.DEFAULT_BUFFER_SIZE (8 KiB) and a
    `BufferedWriter` of `wbufsize` = 16 KiB, allocated up front and kept for the life of
    the connection. A websocket reads its frames from the socket itself, so after the
    handshake the read buffer only holds memory (it was filled by the request's headers,
    so its pages are resident). With 2 KiB, a request line and headers of usual size are
    still read in one `recv`, and a larger read (a body) goes straight to the socket
    (BufferedReader bypasses a buffer smaller than the read).
    Measured: tracemalloc 8.2 -> 2.2 KiB a connection (socket.py:335).

    The write buffer is set in app/realtime/server.py (`HTTP_WRITE_BUFFER`), together with
    TCP_NODELAY, which lets a response larger than it leave in two sends without waiting.
    """
    import eventlet.wsgi

    protocol = eventlet.wsgi.HttpProtocol
    if _version("eventlet")[:1] != (0,) or not hasattr(protocol, "rbufsize"):
        return  # another eventlet: its connection setup was not checked
    protocol.rbufsize = HTTP_READ_BUFFER


class PingScheduler:
    """One green thread sends every socket's PING when it is due.

    Entries are (due, sequence, socket) in a heap; the thread sleeps until the earliest
    is due, or until an entry earlier than the one it waits for is added. The lock only
    matters with real threads (the tests); on eventlet it is green and never contended.
    """

    def __init__(self, eio: engineio.Server):
        self.eio = eio
        self._heap: list[tuple[float, int, eio_socket.Socket]] = []
        self._sequence = itertools.count()
        self._wake = eio.create_event()
        self._lock = threading.Lock()
        self._task = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, socket: eio_socket.Socket, delay: float) -> None:
        """Send `socket` a PING in `delay` seconds."""
        entry = (time.monotonic() + delay, next(self._sequence), socket)
        with self._lock:
            heapq.heappush(self._heap, entry)
            earliest = self._heap[0] is entry
            start = self._task is None
            if start:
                self._task = True
        if start:
            self._task = self.eio.start_background_task(self._run)
        elif earliest:
            self._wake.set()

    def due(self, now: float) -> list[eio_socket.Socket]:
        """Take the sockets whose ping is due at `now` out of the heap."""
        sockets = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                sockets.append(heapq.heappop(self._heap)[2])
        return sockets

    def wait(self) -> None:
        """Until the earliest entry is due, or an earlier one is added."""
        with self._lock:
            timeout = self._heap[0][0] - time.monotonic() if self._heap else None
        if timeout is None or timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def _run(self) -> None:
        while True:
            try:
                self.wait()
                for count, socket in enumerate(self.due(time.monotonic()), 1):
                    send_ping(socket)
                    if count % PINGS_PER_TURN == 0:
                        self.eio.sleep(0)
            except Exception:  # noqa: BLE001  (one socket's failure must not stop every ping)
                log.exception("ping scheduler: a ping could not be sent")


def send_ping(socket: eio_socket.Socket) -> None:
    """What engineio's `Socket._send_ping` does once its sleep is over."""
    if not socket.closing and not socket.closed:
        socket.last_ping = time.time()
        socket.send(eio_packet.Packet(eio_packet.PING))


def _scheduled_ping(self: eio_socket.Socket) -> None:
    scheduler = getattr(self.server, "ping_scheduler", None)
    if scheduler is None:
        return _library_schedule_ping(self)
    # engineio's own rule: a new ping only once the previous one was answered (or at connect)
    if self.last_ping:
        self.last_ping = None
        scheduler.add(self, self.server.ping_interval)
    return None


_library_schedule_ping = eio_socket.Socket.schedule_ping


def one_ping_scheduler(eio: engineio.Server) -> None:
    """Send pings from one green thread per process, not one sleeping green thread per socket.

    python-engineio 4.15 (`Socket.schedule_ping`) starts a background task per socket at
    connect and after every PONG; it sleeps through the ping interval, then stamps
    `last_ping` and queues a PING. So every idle websocket keeps a third suspended green
    thread (with its GreenThread, Event and timer) besides its reader and its writer.
    Here `schedule_ping` puts the socket in one heap of due times, served by a single
    green thread which, when a ping is due, does exactly what `_send_ping` did after its
    sleep. Everything else is engineio's own: a PONG schedules the next ping (only once
    the previous was answered), `check_ping_timeout` (on each send, in engineio's service
    task, and the websocket read timeout of ping interval + timeout) closes a socket whose
    PONG did not come within ping_timeout. Measured (tracemalloc, 10,000 sockets): one green
    thread fewer per socket (30,000 -> 20,000 greenlets), about 3.5 KiB a socket (greenlet
    stack copy 2.3, GreenThread, Event, timer and listener 1.2).
    Only with the eventlet async mode (the server's), on engineio 4.x whose `_send_ping`
    is the sleep-then-send written here.
    """
    if eio.async_mode != "eventlet" or _version("python-engineio")[:1] != (4,):
        return
    if not hasattr(eio_socket.Socket, "_send_ping"):
        return  # another engineio: its ping loop was not checked
    if getattr(eio, "ping_scheduler", None) is None:
        eio.ping_scheduler = PingScheduler(eio)
    if eio_socket.Socket.schedule_ping is not _scheduled_ping:
        eio_socket.Socket.schedule_ping = _scheduled_ping


# Keys of the WSGI environ that describe the HTTP request as a transport (its body stream,
# the eventlet server's hooks, WSGI flags, the websocket handshake): nothing reads them once
# the socket is open.
TRANSPORT_KEYS = frozenset(
    {
        "HTTP_UPGRADE",
        "HTTP_CONNECTION",
        "HTTP_SEC_WEBSOCKET_KEY",
        "HTTP_SEC_WEBSOCKET_VERSION",
        "HTTP_SEC_WEBSOCKET_EXTENSIONS",
        "wsgi.version",
        "wsgi.input",
        "wsgi.errors",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
        "wsgi.input_terminated",
        "eventlet.input",
        "eventlet.posthooks",
        "eventlet.set_idle",
        "GATEWAY_INTERFACE",
        "SERVER_SOFTWARE",
        "RAW_PATH_INFO",
        "headers_raw",
    }
)


def trimmed_environ(environ: dict) -> dict:
    """A copy of `environ` without TRANSPORT_KEYS."""
    return {key: value for key, value in environ.items() if key not in TRANSPORT_KEYS}


class TrimmedEnvirons(dict):
    """`server.environ`: each Engine.IO session's WSGI environ, stored without its transport keys."""

    def __setitem__(self, eio_sid, environ) -> None:
        super().__setitem__(eio_sid, trimmed_environ(environ))


def keep_trimmed_environ(server: socketio.Server) -> None:
    """Keep each socket's WSGI environ without the keys of the HTTP transport.

    python-socketio 5.18 keeps the environ of each Engine.IO session (`server.environ`,
    a copy made by Flask-SocketIO's middleware) for the socket's life: Flask-SocketIO
    builds the request context of every event and of the disconnect from it, and the
    Admin UI lists its headers. What they read is the request line, server and client
    address, scheme, headers and Flask-SocketIO's own `flask.app` and `saved_session`;
    the body stream, eventlet's hooks, the WSGI flags, eventlet's raw header tuple and
    the websocket handshake headers are never read after the handshake (checked in app/,
    flask_socketio, socketio and werkzeug's request construction). Stored without them,
    a websocket's copy drops from 35 keys to about 18, and keeps the smaller dict size
    when the first event's request context adds `werkzeug.request` and `saved_session`:
    832 -> 464 bytes of dict, and no resize on the first event (tracemalloc: werkzeug's
    request.py:145 then allocates nothing). The values are shared with the environ
    eventlet's request keeps anyway, so this saves only the dict: about 0.4 KiB a socket.
    """
    if _version("python-socketio")[:1] != (5,):
        return
    if isinstance(server.environ, TrimmedEnvirons):
        return
    environs = TrimmedEnvirons()
    for eio_sid, environ in server.environ.items():
        environs[eio_sid] = environ
    server.environ = environs
