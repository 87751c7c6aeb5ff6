"""Corrections to python-engineio's (4.15.1) websocket transport on eventlet: no writer green thread
per socket (the socket's memory: tests/test_socket_memory.py, bench/README.md)."""

import contextlib
import logging
import socket

import socketio
from engineio import exceptions
from engineio import packet as eio_packet
from engineio import socket as eio_socket

from app.realtime.patches import eventlet_websocket

log = logging.getLogger(__name__)

PACKAGE = "python-engineio"
WRITTEN_FOR = "4.15.1"

WRITER_ON_DEMAND = "engineio: websocket packets written without a writer green thread per socket"


def apply(server: socketio.Server) -> None:
    """Install the writer of this server's websockets (eventlet only: it writes to eventlet's sockets)."""
    if server.eio.async_mode != "eventlet":
        return
    if eio_socket.Socket._websocket_handler is not websocket_handler:
        eio_socket.Socket._websocket_handler = websocket_handler
    queue = server.eio._async["queue"]
    if not getattr(queue, "wakes_writer", False):
        # engineio looks its queue class up on the server instance: this server only.
        server.eio._async = {**server.eio._async, "queue": writing_queue(queue)}


def in_effect(server: socketio.Server) -> list[str]:
    """The names of this module's corrections in effect for `server`."""
    installed = eio_socket.Socket._websocket_handler is websocket_handler
    if installed and getattr(server.eio._async["queue"], "wakes_writer", False):
        return [WRITER_ON_DEMAND]
    return []


def writing_queue(base: type) -> type:
    """`base` (eventlet's Queue), whose `put` wakes the socket's websocket writer once it has one."""

    class WritingQueue(base):
        wakes_writer = True
        writer = None  # the WebSocketWriter, from the websocket's upgrade on

        def put(self, item, block=True, timeout=None):
            super().put(item, block, timeout)
            if self.writer is not None:
                self.writer.wake()

        def first(self):
            """The next packet, left in the queue (IndexError when empty)."""
            return self.queue[0]

    return WritingQueue


class WebSocketWriter:
    """Writes an upgraded socket's queued packets, with no green thread while there is nothing to write.

    Upstream limitation: `Socket._websocket_handler` starts a writer green thread per websocket,
    which waits on the socket's queue for the life of the connection: with its GreenThread,
    the C stack slice and the Python frame stack a suspended greenlet keeps, its queue waiter
    and timeout timer, it is a large part of an idle socket's memory (bench/README.md, "Memory
    per idle socket"; the upstream fix would write from the sending thread, as Node's `ws`
    does). Here a packet put in the queue is
    written at once by the green thread that sends it, as long as the socket takes the frame
    whole without waiting; otherwise (a full socket buffer, a frame already waiting, the
    close) a green thread is started for the backlog, does what the library's writer did, and
    ends when the queue is empty. So a slow client never holds up a sender (a fan-out), and
    the order of the packets is the queue's.
    """

    __slots__ = ("socket", "ws", "task", "rest", "stopped")

    def __init__(self, eio_socket: eio_socket.Socket, ws) -> None:
        self.socket = eio_socket
        self.ws = ws
        self.task = None  # the green thread writing the backlog, while there is one
        self.rest = b""  # the end of a frame the socket did not take at once
        self.stopped = False  # the websocket was closed: nothing more is written

    def wake(self) -> None:
        """Write what the queue holds, now or from a backlog green thread."""
        if self.task is not None or self.stopped:
            return  # the backlog thread takes every packet queued before it ends
        if not self.write_now():
            import eventlet  # (this module's writer only runs on eventlet)

            self.task = eventlet.spawn(self.write_backlog)

    def write_now(self) -> bool:
        """Send the queued packets without waiting; False when something is left for a green thread."""
        raw = getattr(self.ws.socket, "fd", None)  # eventlet's GreenSocket: its non-blocking socket
        queue, lock = self.socket.queue, self.ws._sendlock
        if raw is None or not lock.acquire(blocking=False):
            return False
        try:
            while queue.qsize():
                if queue.first() is None:
                    return False  # the close: the backlog thread closes the websocket
                frame = self.ws._pack_message(queue.get(block=False).encode())
                try:
                    sent = raw.send(frame)
                except OSError:  # would block, or failed: the backlog thread sends it or ends
                    sent = 0
                if sent < len(frame):
                    self.rest = frame[sent:]  # its task_done once sent
                    return False
                queue.task_done()
            return True
        finally:
            lock.release()

    def write_backlog(self) -> None:
        """The library's writer, until the queue is empty: the websocket is closed at the close
        packet (None) or when a send fails."""
        queue = self.socket.queue
        try:
            if self.rest:
                with self.ws._sendlock:
                    self.ws.socket.sendall(self.rest)
                self.rest = b""
                queue.task_done()
            while queue.qsize():
                pkt = queue.get(block=False)
                queue.task_done()
                if pkt is None:
                    break
                self.ws.send(pkt.encode())
            else:
                self.task = None  # no switch since the queue was seen empty: no packet is left behind
                return
        except BaseException:  # noqa: BLE001, S110  (as the library's writer: a failed send ends the websocket)
            pass
        self.stopped = True
        self.close()

    def close(self) -> None:
        """Send the closing frame and shut the socket down: its reader sees the end of the stream at
        once, and the socket itself is closed when its reader ends (a HubReader, or eventlet's `finish`).

        Closing it here, as the library's writer did with `ws.close()`, pulls the socket from
        under the reader blocked on it, whose websocket then closes it again and logs a
        shutdown error (EBADF). Nothing to do when the client's close frame closed it already.
        """
        if getattr(self.ws, "websocket_closed", False):
            return
        self.ws._send_closing_frame(ignore_send_errors=True)
        with contextlib.suppress(OSError):
            self.ws.socket.shutdown(socket.SHUT_RDWR)

    def join(self) -> None:
        """Until the backlog green thread, if there is one, has ended (started or not yet)."""
        if self.task is not None:
            self.task.wait()


def websocket_handler(self: eio_socket.Socket, ws) -> list:
    """`Socket._websocket_handler` (the library's, line for line), its writer a WebSocketWriter."""
    if not getattr(self.queue, "wakes_writer", False):  # a socket of a server without the correction
        return _library_websocket_handler(self, ws)

    def websocket_wait():
        data = ws.wait()
        if data and len(data) > self.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    # try to set a socket timeout matching the configured ping interval and timeout
    for attr in ["_sock", "socket"]:
        if hasattr(ws, attr) and hasattr(getattr(ws, attr), "settimeout"):
            getattr(ws, attr).settimeout(self.server.ping_interval + self.server.ping_timeout)
    if self.connected:
        if not _upgraded(self, ws, websocket_wait):
            return []
    else:
        self.connected = True
        self.upgraded = True
    writer = self.queue.writer = WebSocketWriter(self, ws)
    writer.wake()  # what was queued before the websocket (the connect's packets, an upgrade's)
    self.server.logger.info("%s: Upgrade to websocket successful", self.sid)
    if _read_from_hub(self, ws, writer):
        return []
    _read(self, websocket_wait)
    _finish(self, writer)
    return []


def _finish(self: eio_socket.Socket, writer: WebSocketWriter) -> None:
    """The library's end of a websocket whose reading stopped."""
    self.queue.put(None)  # the writer closes the websocket
    writer.join()
    self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)


def _read_from_hub(self: eio_socket.Socket, ws, writer: WebSocketWriter) -> bool:
    """Hand the websocket to a HubReader and its connection out of eventlet's WSGI server, when
    both can be (False: this green thread reads it, as the library does)."""
    from eventlet.websocket import RFC6455WebSocket  # (this module's writer only runs on eventlet)

    detach = (ws.environ or {}).get(eventlet_websocket.DETACH)
    if detach is None or type(ws) is not RFC6455WebSocket or ws.extensions:
        return False
    sock, release = detach()
    ws.environ = ws.iterator = None  # the request's state goes with the WSGI green thread
    reader = eventlet_websocket.HubReader(
        ws, sock, lambda message: _receive(self, message), lambda: _finish(self, writer), release
    )
    reader.start()

    def not_now(*_args, **_kwargs):  # WebSocketWSGI's close frame as the handler returns: the reader's
        del ws._send_closing_frame

    ws._send_closing_frame = not_now  # (nothing switches before WebSocketWSGI calls it)
    return True


def _upgraded(self: eio_socket.Socket, ws, websocket_wait) -> bool:
    """The library's upgrade of a polling session: probe, then UPGRADE."""
    self.upgrading = True  # hold packet sends during the upgrade
    decoded_pkt = eio_packet.Packet(encoded_packet=websocket_wait())
    if decoded_pkt.packet_type != eio_packet.PING or decoded_pkt.data != "probe":
        self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
        self.upgrading = False
        return False
    ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
    self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end poll
    pkt = websocket_wait()
    decoded_pkt = eio_packet.Packet(encoded_packet=pkt)
    if decoded_pkt.packet_type != eio_packet.UPGRADE:
        self.upgraded = False
        self.server.logger.info(
            "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.", self.sid, pkt
        )
        self.upgrading = False
        return False
    self.upgraded = True
    self.upgrading = False
    return True


def _read(self: eio_socket.Socket, websocket_wait) -> None:
    """The library's reading loop, until the websocket closes or fails."""
    while True:
        try:
            p = websocket_wait()
        except Exception as e:  # noqa: BLE001
            # if the socket is already closed, we can assume this is a downstream error of that
            if not self.closed:
                self.server.logger.info('%s: Unexpected error "%s", closing connection', self.sid, str(e))
            return
        if p is None or not _receive(self, p):  # None: connection closed by client
            return


def _receive(self: eio_socket.Socket, p) -> bool:
    """The library's handling of one message; False when the websocket must end."""
    pkt = eio_packet.Packet(encoded_packet=p)
    try:
        self.receive(pkt)
    except exceptions.UnknownPacketError:
        pass
    except exceptions.SocketIsClosedError:
        self.server.logger.info("Receive error -- socket is closed")
        return False
    except BaseException:  # noqa: BLE001
        # if we get an unexpected exception we log the error and exit the connection properly
        self.server.logger.exception("Unknown receive error")
        return False
    return True


_library_websocket_handler = eio_socket.Socket._websocket_handler
