"""Corrections to python-engineio (4.15.1): malformed packets, closes that wait, one ping thread."""

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

PACKAGE = "python-engineio"
WRITTEN_FOR = "4.15.1"

MALFORMED_PACKETS = "engineio: malformed packets close the connection"
CLOSE_WITHOUT_WAITING = "engineio: disconnect does not wait for the queue"
PING_SCHEDULER = "engineio: pings from one green thread"
# Pings sent by the scheduler before it lets other green threads run.
PINGS_PER_TURN = 200


def apply(server: socketio.Server) -> None:
    """Install every correction: the process-wide ones, and those of this app's Engine.IO server."""
    close_on_malformed_packets()
    close_without_waiting(server.eio)
    if server.eio.async_mode == "eventlet":
        install_ping_scheduler(server.eio)


def in_effect(server: socketio.Server) -> list[str]:
    """The names of this module's corrections in effect for `server`."""
    found = []
    if getattr(eio_packet.Packet.decode, "closes_on_error", False):
        found.append(MALFORMED_PACKETS)
    if getattr(server.eio.disconnect, "does_not_wait", False):
        found.append(CLOSE_WITHOUT_WAITING)
    scheduler = getattr(server.eio, "ping_scheduler", None)
    if scheduler is not None and eio_socket.Socket.schedule_ping is scheduled_ping:
        found.append(PING_SCHEDULER)
    return found


def close_on_malformed_packets() -> None:
    """Turn an undecodable Engine.IO packet into a CLOSE packet.

    Upstream bug: websocket frames are decoded outside the error handling, so a garbage
    frame ends the handler without closing the socket; the upstream fix would catch
    ValueError around `Packet.decode` in `Socket._websocket_handler` and close. Until then
    the Socket.IO disconnect handler never runs and the user keeps counting as online
    (their new notifications would be marked DELIVERED to a dead connection) until the ping
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

    Upstream bug: `Server.disconnect` closes with `wait=True`, which waits until the CLOSE
    packet has been taken from the socket's queue; on the polling transport only the
    client's next GET takes it, and when none comes the caller waits for ever (the upstream
    fix would be `wait=False` there). That caller is the request itself when a polling POST
    breaks the protocol (a body over the buffer limit, announced by Content-Length alone; a
    client PING or NOOP packet): its connection stayed in CLOSE_WAIT and its slot of the
    server's pool was lost. It is also every server-side close (token expiry, connect
    deadline, rate limit) of a polling client. The CLOSE packet stays queued for a client
    that polls again.
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


def scheduled_ping(self: eio_socket.Socket) -> None:
    """`Socket.schedule_ping`, through the server's scheduler when it has one."""
    scheduler = getattr(self.server, "ping_scheduler", None)
    if scheduler is None:
        return _library_schedule_ping(self)
    # engineio's own rule: a new ping only once the previous one was answered (or at connect)
    if self.last_ping:
        self.last_ping = None
        scheduler.add(self, self.server.ping_interval)
    return None


_library_schedule_ping = eio_socket.Socket.schedule_ping


def install_ping_scheduler(eio: engineio.Server) -> None:
    """Send pings from one green thread per process, not one sleeping green thread per socket.

    `Socket.schedule_ping` starts a background task per socket at connect and after every
    PONG; it sleeps through the ping interval, then stamps `last_ping` and queues a PING.
    So every idle websocket keeps a third suspended green thread (with its GreenThread,
    Event and timer) besides its reader and its writer. Here `schedule_ping` puts the
    socket in one heap of due times, served by a single green thread which, when a ping is
    due, does exactly what `_send_ping` did after its sleep. Everything else is engineio's
    own: a PONG schedules the next ping (only once the previous was answered), and
    `check_ping_timeout` closes a socket whose PONG did not come within ping_timeout.
    `apply` installs it with the eventlet async mode (the server's) only.
    """
    if getattr(eio, "ping_scheduler", None) is None:
        eio.ping_scheduler = PingScheduler(eio)
    if eio_socket.Socket.schedule_ping is not scheduled_ping:
        eio_socket.Socket.schedule_ping = scheduled_ping
