"""Corrections to eventlet's (0.41.3) websockets: once open, a websocket is read from the hub, with no
green thread per connection (an idle socket's memory: bench/README.md, "Memory per idle socket").

Upstream limitation: eventlet's WSGI server serves each connection from a green thread of its
pool, and a websocket keeps it for its whole life, blocked in a read: its saved C stack, its
frame stack, and the request state those frames hold (protocol, environ, input) are most of
what an idle websocket costs. Node's `ws` reads a socket when the event loop says it has data;
the upstream fix would be a websocket that does the same. Here, once the Engine.IO handshake
(and upgrade) is done, the connection leaves eventlet's WSGI server (`detach`): its green
thread ends, its slot of MAX_CONNECTIONS stays taken (`connection_pool`), and a hub listener
(`HubReader`) starts a short green thread only when the socket has bytes to read. Frames are
parsed as RFC 6455 says (app/realtime/frames.py), with the checks eventlet's own reader makes.

Only for uncompressed RFC 6455 websockets of the server of `python wsgi.py`; any other
(compression asked for, an old protocol version, eventlet's server run by something else)
keeps eventlet's reader.
"""

import logging
import socket

from app.realtime.frames import CLOSE, PING, PONG, TEXT, FrameParser, close_status

log = logging.getLogger(__name__)

PACKAGE = "eventlet"
WRITTEN_FOR = "0.41.3"

HUB_READER = "eventlet: open websockets read from the hub without a green thread each"
# environ key of the callable that takes a connection out of eventlet's WSGI server.
DETACH = "app.detach_connection"
# Bytes taken from the socket per read; a larger message arrives over several reads.
READ_SIZE = 65536


def in_effect(compression: bool) -> list[str]:
    """The name of this module's correction when the server of `python wsgi.py` runs with it
    (compressed websockets keep eventlet's reader)."""
    return [] if compression else [HUB_READER]


def connection_pool(size: int):
    """eventlet's GreenPool for `eventlet.wsgi.server`, whose slots a websocket keeps once detached."""
    import eventlet

    class ConnectionPool(eventlet.GreenPool):
        def hold_slot(self) -> None:
            """Keep the calling connection's slot after its green thread ends (the
            semaphore goes below zero until that thread gives its slot back)."""
            self.sem.counter -= 1

        def release_slot(self) -> None:
            self.sem.release()
            if self.sem.balance == self.size and not self.no_coros_running.ready():
                self.no_coros_running.send(None)  # what GreenPool does as its last thread ends

        def waitall(self) -> None:
            """Until every request has ended and every websocket has closed."""
            if self.running() or self.sem.balance < self.size:
                self.no_coros_running.wait()

    return ConnectionPool(size)


class _Detached:
    """What eventlet's WSGI server closes once a websocket has left it: nothing."""

    def shutdown(self, *_args) -> None:
        pass

    def close(self) -> None:
        pass


DETACHED = _Detached()


def detach(protocol, pool) -> socket.socket:
    """Take `protocol`'s connection out of eventlet's WSGI server: the server closes nothing when
    the request ends, the connection keeps its pool slot; its (green) socket is returned."""
    sock = protocol.connection
    protocol.connection = protocol.request = protocol.conn_state[1] = DETACHED
    pool.hold_slot()
    return sock


class HubReader:
    """Reads an open websocket when the hub says its socket has bytes, on a green thread that ends
    once they are handled; control frames answered here, messages to `on_message`.

    `on_message(text or bytes)` handles one message and returns False to end the websocket;
    `on_end()` runs once when it ends (the client's close or end of stream, a read error, a
    broken frame, `on_message`'s False); then the socket is closed and its slot released.
    While a green thread handles what was read, the socket is not listened to: messages are
    handled one at a time, in order, as eventlet's reader did.
    """

    __slots__ = ("ws", "sock", "parser", "on_message", "on_end", "release", "listener", "ended")

    def __init__(self, ws, sock, on_message, on_end, release) -> None:
        self.ws = ws  # eventlet's RFC6455WebSocket: its writes (pong, close) and close state
        self.sock = sock  # eventlet's GreenSocket; `.fd` is the non-blocking socket under it
        self.parser = FrameParser(ws.max_frame_length)
        self.on_message = on_message
        self.on_end = on_end
        self.release = release  # gives the connection's slot back
        self.listener = None
        self.ended = False

    def start(self) -> None:
        try:
            self._listen()
        except BaseException:
            self._end()  # the socket closed and its slot released: nothing would ever read it
            raise

    def _listen(self) -> None:
        from eventlet import hubs

        hub = hubs.get_hub()
        self.listener = hub.add(hub.READ, self.sock.fileno(), self._readable, _ignore, self._lost)

    def _unlisten(self) -> None:
        if self.listener is not None:
            from eventlet import hubs

            hubs.get_hub().remove(self.listener)
            self.listener = None

    def _readable(self, _fileno) -> None:  # in the hub: nothing here may wait
        import eventlet

        self._unlisten()
        eventlet.spawn_n(self._pump)

    def _lost(self) -> None:  # the hub saw the file descriptor closed under it
        import eventlet

        self.listener = None
        eventlet.spawn_n(self._end)

    def _pump(self) -> None:
        close_data = None
        try:
            data = self.sock.fd.recv(READ_SIZE)
            if data:
                close_data = self._handle(self.parser.feed(data))
                failed = self.parser.failure
                if close_data is None and failed is not None:
                    close_data = (failed.status, failed.reason)
                if close_data is None:
                    return self._listen()
        except (BlockingIOError, InterruptedError):  # woken for nothing: wait again
            return self._listen()
        except OSError:
            pass  # the connection failed: it ends
        except BaseException:  # never leave a socket unread and unclosed
            log.exception("websocket reader failed: closing the connection")
            close_data = (1011, "Internal Server Error")
        return self._end(close_data or None)

    def _handle(self, frames: list[tuple[int, bytes]]):
        """None to read on; a close frame's (status, reason) to end with ((), to end without one)."""
        for opcode, payload in frames:
            if opcode == PING:
                self.ws.send(payload, control_code=PONG)
            elif opcode == CLOSE:
                return (close_status(payload), "")
            elif opcode != PONG:
                if opcode == TEXT:
                    try:
                        payload = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        return (1007, "Text data must be valid utf-8")
                if not self.on_message(payload):
                    return ()
        return None

    def _end(self, close_data=None) -> None:
        """Once: answer or send the close frame, let the owner finish, close the socket, free the slot."""
        if self.ended:
            return
        self.ended = True
        self._unlisten()
        try:
            if close_data:
                self.ws._send_closing_frame(ignore_send_errors=True, close_data=close_data)
            self.on_end()
        except BaseException:  # noqa: BLE001  (the socket is closed and its slot freed whatever failed)
            log.exception("websocket end failed")
        finally:
            self.ws._send_closing_frame(ignore_send_errors=True)
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.release()


def _ignore(*_args) -> None:
    """A listener's throwback: this reader has no green thread waiting to be told."""
