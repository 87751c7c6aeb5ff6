"""The memory corrections of an idle websocket (app/realtime/patches/): packets written without a
writer green thread, connects on a green thread of their own, the HTTP state released.

That the server of `python wsgi.py` has them is checked in tests/e2e/test_patches.py; its
websockets (pings, deliveries, closes) are exercised by the rest of tests/e2e/."""

import socket
import types
import warnings

import pytest
from engineio import packet as eio_packet

from app.realtime.patches import eventlet as eventlet_patches
from app.realtime.patches import socketio as socketio_patches
from app.realtime.patches.engineio_websocket import WebSocketWriter, writing_queue

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's deprecation notice
    import eventlet
    import eventlet.queue
    import eventlet.semaphore


class RawSocket:
    """The non-blocking socket under eventlet's GreenSocket: takes `room` bytes, then would block."""

    def __init__(self, room: int = 1 << 20):
        self.room = room
        self.data = b""

    def send(self, data: bytes) -> int:
        if not self.room:
            raise BlockingIOError()
        taken = data[: self.room]
        self.room -= len(taken)
        self.data += taken
        return len(taken)


class GreenSocket:
    """What the writer touches of eventlet's GreenSocket: `fd` and a waiting `sendall`."""

    def __init__(self, raw: RawSocket):
        self.fd = raw
        self.shut = None
        self.waited = b""  # what went through the (green) waiting sendall

    def shutdown(self, how) -> None:
        self.shut = how

    def sendall(self, data: bytes) -> None:
        eventlet.sleep(0)  # a send that waits lets other green threads run
        self.waited += data
        self.fd.data += data


class WebSocket:
    """What the writer touches of eventlet's websocket; frames are the message between brackets."""

    def __init__(self, raw: RawSocket):
        self.socket = GreenSocket(raw)
        self._sendlock = eventlet.semaphore.Semaphore()
        self.closed = False
        self.websocket_closed = False
        self.fail = False

    def _pack_message(self, message) -> bytes:
        return b"[" + message.encode() + b"]"

    def send(self, message) -> None:
        if self.fail:
            raise OSError("broken pipe")
        with self._sendlock:
            self.socket.sendall(self._pack_message(message))

    def _send_closing_frame(self, ignore_send_errors=False) -> None:
        assert not self.websocket_closed, "closed twice (eventlet would log a shutdown error)"
        self.closed = self.websocket_closed = True


def writer_for(room: int = 1 << 20) -> tuple[WebSocketWriter, eventlet.queue.Queue, WebSocket]:
    server = types.SimpleNamespace()
    queue = writing_queue(eventlet.queue.Queue)()
    ws = WebSocket(RawSocket(room))
    writer = WebSocketWriter(types.SimpleNamespace(server=server, queue=queue), ws)
    queue.writer = writer
    return writer, queue, ws


def message(text: str) -> eio_packet.Packet:
    return eio_packet.Packet(eio_packet.MESSAGE, data=text)


def test_packets_are_written_at_once_by_the_sender_without_a_green_thread():
    writer, queue, ws = writer_for()
    for text in ("a", "b", "c"):
        queue.put(message(text))
    assert ws.socket.fd.data == b"[4a][4b][4c]"
    assert writer.task is None
    assert queue.unfinished_tasks == 0
    assert ws.socket.waited == b""  # nothing waited for the socket


def test_what_the_socket_does_not_take_is_written_in_order_by_a_backlog_thread_that_then_ends():
    writer, queue, ws = writer_for(room=6)  # the first frame and half of the second
    for text in ("one", "two", "three"):
        queue.put(message(text))  # never waits
    assert writer.task is not None
    assert ws.socket.fd.data == b"[4one]"
    writer.join()
    assert ws.socket.fd.data == b"[4one][4two][4three]"
    assert writer.task is None  # the backlog thread ended with the queue empty
    assert queue.unfinished_tasks == 0
    ws.socket.fd.room = 100
    queue.put(message("four"))  # the socket has room again: written at once
    assert ws.socket.fd.data.endswith(b"[4four]")
    assert writer.task is None


def test_the_close_marker_closes_the_websocket_after_what_was_queued_before_it():
    writer, queue, ws = writer_for(room=0)
    queue.put(message("last"))
    queue.put(None)
    writer.join()
    assert ws.socket.fd.data == b"[4last]"
    assert ws.closed and writer.stopped
    assert ws.socket.shut == socket.SHUT_RDWR  # the reader sees the end; its request closes the socket
    queue.put(message("after the close"))
    assert ws.socket.fd.data == b"[4last]"


def test_a_websocket_the_client_already_closed_is_not_closed_again():
    writer, queue, ws = writer_for()
    ws.websocket_closed = True  # eventlet answered the client's close frame and closed its socket
    queue.put(None)
    writer.join()
    assert writer.stopped and not ws.closed


def test_a_failed_send_closes_the_websocket_as_the_library_writer_did():
    writer, queue, ws = writer_for(room=0)
    ws.fail = True
    queue.put(message("x"))  # the raw socket is full: left to the backlog thread
    queue.put(message("y"))
    writer.join()
    assert ws.closed and writer.stopped


def test_a_send_while_the_backlog_thread_writes_is_left_to_it():
    writer, queue, ws = writer_for(room=3)
    queue.put(message("first"))
    task = writer.task
    queue.put(message("second"))  # the backlog thread takes it, in order
    assert writer.task is task
    writer.join()
    assert ws.socket.fd.data == b"[4first][4second]"


def test_the_connect_is_handled_on_its_own_green_thread_and_the_reader_waits_for_it():
    import greenlet

    seen = []

    def handle_connect(eio_sid, namespace, data):
        seen.append(greenlet.getcurrent())
        eventlet.sleep(0.01)
        if data == "refuse":
            raise ValueError("refused")
        return f"{eio_sid} {namespace}"

    server = types.SimpleNamespace(_handle_connect=handle_connect)
    socketio_patches.connect_on_own_green_thread(server)
    socketio_patches.connect_on_own_green_thread(server)  # once only
    assert server._handle_connect("sid", "/", None) == "sid /"
    assert seen[0] is not greenlet.getcurrent()
    with pytest.raises(ValueError, match="refused"):
        server._handle_connect("sid", "/", "refuse")
    assert len(seen) == 2


def test_a_websocket_connection_releases_its_http_buffers_and_headers_and_keeps_its_socket():
    import http.client
    import io

    ours, peer = socket.socketpair()
    try:
        headers = http.client.parse_headers(io.BytesIO(b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
        protocol = types.SimpleNamespace(rfile=ours.makefile("rb", 2048), wfile=ours.makefile("wb", 2048))
        protocol.headers = headers
        eventlet_patches.release_http_state(protocol)
        assert protocol.rfile.closed and protocol.wfile.closed
        assert len(protocol.headers) == 0 and protocol.headers is eventlet_patches.EMPTY_HEADERS
        ours.sendall(b"frame")  # the websocket's own reads and writes
        assert peer.recv(16) == b"frame"
        peer.sendall(b"reply")
        assert ours.recv(16) == b"reply"
    finally:
        ours.close()
        peer.close()


def test_the_deadline_protocol_releases_the_http_state_when_the_websocket_says_it_switched(monkeypatch):
    import eventlet.wsgi

    released = []
    monkeypatch.setattr(eventlet_patches, "release_http_state", released.append)
    protocol_class = eventlet_patches.deadline_protocol(1.0, 1.0)
    idle = []
    monkeypatch.setattr(
        eventlet.wsgi.HttpProtocol, "get_environ", lambda self: {"eventlet.set_idle": lambda: idle.append(1)}
    )
    protocol = protocol_class.__new__(protocol_class)  # no connection: only get_environ is under test
    environ = protocol.get_environ()
    assert released == [] and idle == []
    environ["eventlet.set_idle"]()
    assert idle == [1] and released == [protocol]


def test_the_writer_is_only_installed_for_eventlet(app):
    from app.extensions import socketio
    from app.realtime.patches import engineio_websocket

    assert socketio.server.eio.async_mode == "threading"
    assert engineio_websocket.in_effect(socketio.server) == []
    assert not getattr(socketio.server.eio._async["queue"], "wakes_writer", False)
