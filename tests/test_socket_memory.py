"""The memory corrections of app/realtime/patches/: the ping scheduler, the trimmed environ,
the read buffer."""

import time
import warnings

import engineio
import pytest
from engineio import packet as eio_packet
from engineio import socket as eio_socket

from app.extensions import socketio
from app.realtime.patches import engineio as engineio_patches
from app.realtime.patches import eventlet as eventlet_patches
from app.realtime.patches.engineio import PingScheduler
from app.realtime.patches.socketio import TRANSPORT_KEYS, TrimmedEnvirons, trimmed_environ

WAIT = 5  # seconds; generous bound for a ping due in a fraction of a second


class FakeSocket:
    """What the scheduler touches of an Engine.IO socket."""

    def __init__(self, name: str, closed: bool = False):
        self.name = name
        self.closing = False
        self.closed = closed
        self.last_ping = None
        self.sent: list[eio_packet.Packet] = []

    def send(self, pkt) -> None:
        self.sent.append(pkt)


def _wait(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def eio(monkeypatch):
    """An Engine.IO server (threading mode) with the scheduler, installed as `apply` installs it on eventlet.

    That the server of `python wsgi.py` has it is checked in tests/e2e/test_patches.py.
    """
    monkeypatch.setattr(eio_socket.Socket, "schedule_ping", eio_socket.Socket.schedule_ping)  # restored after
    server = engineio.Server(async_mode="threading", ping_interval=0.2, ping_timeout=0.2)
    engineio_patches.install_ping_scheduler(server)
    assert isinstance(server.ping_scheduler, PingScheduler)
    return server


def test_due_sockets_come_out_earliest_first():
    scheduler = PingScheduler(engineio.Server(async_mode="threading"))
    scheduler._task = object()  # no thread: only the heap is under test
    late, early, never = FakeSocket("late"), FakeSocket("early"), FakeSocket("never")
    scheduler.add(late, 2.0)
    scheduler.add(early, 1.0)
    scheduler.add(never, 60.0)
    assert scheduler.due(time.monotonic()) == []
    assert scheduler.due(time.monotonic() + 3) == [early, late]
    assert len(scheduler) == 1


def test_one_thread_pings_every_socket_when_due_and_skips_closed_ones(eio):
    scheduler = eio.ping_scheduler
    sockets = [FakeSocket(f"s{i}") for i in range(50)]
    closed = FakeSocket("closed", closed=True)
    for index, sock in enumerate(sockets):
        scheduler.add(sock, 0.01 * (index % 5))
    scheduler.add(closed, 0.0)
    assert _wait(lambda: all(sock.sent for sock in sockets))
    for sock in sockets:
        assert [p.packet_type for p in sock.sent] == [eio_packet.PING]
        assert sock.last_ping is not None
    assert closed.sent == []
    assert len(scheduler) == 0


def test_an_earlier_entry_wakes_the_scheduler(eio):
    scheduler = eio.ping_scheduler
    slow, fast = FakeSocket("slow"), FakeSocket("fast")
    scheduler.add(slow, 30.0)  # the thread now sleeps for 30 s
    time.sleep(0.05)
    scheduler.add(fast, 0.05)
    assert _wait(lambda: fast.sent, timeout=2)
    assert slow.sent == []


def test_a_failing_socket_does_not_stop_the_pings_of_others(eio):
    class Broken(FakeSocket):
        def send(self, pkt):
            raise RuntimeError("broken")

    scheduler = eio.ping_scheduler
    good = FakeSocket("good")
    scheduler.add(Broken("broken"), 0.0)
    scheduler.add(good, 0.05)
    assert _wait(lambda: good.sent)


def test_engineio_socket_pings_after_the_interval_then_again_after_each_pong(eio):
    sock = eio_socket.Socket(eio, "sid1")
    eio.sockets["sid1"] = sock
    sock.schedule_ping()  # as at connect
    assert sock.last_ping is None
    assert len(eio.ping_scheduler) == 1
    sock.schedule_ping()  # no second ping while one is scheduled
    assert len(eio.ping_scheduler) == 1
    for _ in range(3):
        pkt = sock.queue.get(timeout=WAIT)
        assert pkt.packet_type == eio_packet.PING
        assert sock.last_ping is not None
        sock.receive(eio_packet.Packet(eio_packet.PONG))  # schedules the next one
        assert sock.last_ping is None
    assert not sock.closed


def test_engineio_socket_without_pong_closes_on_ping_timeout(eio):
    reasons = []
    eio.on("disconnect", lambda sid, reason: reasons.append(reason))
    sock = eio_socket.Socket(eio, "sid2")
    eio.sockets["sid2"] = sock
    sock.schedule_ping()
    assert sock.queue.get(timeout=WAIT).packet_type == eio_packet.PING
    time.sleep(eio.ping_timeout + 0.1)  # no PONG
    assert sock.check_ping_timeout() is False
    assert sock.closed
    assert reasons == [eio.reason.PING_TIMEOUT]


def test_no_ping_for_a_socket_closed_while_waiting(eio):
    sock = eio_socket.Socket(eio, "sid3")
    sock.schedule_ping()
    sock.close(wait=False, abort=True)
    time.sleep(eio.ping_interval + 0.2)
    assert len(eio.ping_scheduler) == 0
    assert sock.queue.get(timeout=1) is None  # only the close marker: no PING


def test_without_a_scheduler_engineio_schedules_its_own_ping(monkeypatch):
    monkeypatch.setattr(eio_socket.Socket, "schedule_ping", engineio_patches.scheduled_ping)
    server = engineio.Server(async_mode="threading", ping_interval=0.1)
    sock = eio_socket.Socket(server, "sid4")
    sock.schedule_ping()
    assert sock.queue.get(timeout=WAIT).packet_type == eio_packet.PING


def test_the_scheduler_is_only_installed_for_eventlet(app):
    assert socketio.server.eio.async_mode == "threading"
    assert getattr(socketio.server.eio, "ping_scheduler", None) is None


def test_trimmed_environ_drops_only_transport_keys():
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/socket.io/",
        "QUERY_STRING": "EIO=4&transport=websocket",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_AUTHORIZATION": "Bearer abc",
        "HTTP_COOKIE": "session=1",
        "HTTP_USER_AGENT": "test",
        "wsgi.url_scheme": "http",
        "flask.app": object(),
        **{key: object() for key in TRANSPORT_KEYS},
    }
    trimmed = trimmed_environ(environ)
    assert set(trimmed) == set(environ) - TRANSPORT_KEYS
    assert "wsgi.input" in environ  # the original is left as it was


def test_socket_server_keeps_trimmed_environs_that_still_build_a_request(app):
    environs = socketio.server.environ
    assert isinstance(environs, TrimmedEnvirons)
    environ = app.test_request_context(
        "/socket.io/?EIO=4&transport=websocket",
        headers={"Authorization": "Bearer abc", "Upgrade": "websocket"},
        environ_base={"REMOTE_ADDR": "10.0.0.7"},
    ).request.environ
    environ = {**environ, "eventlet.input": object(), "eventlet.posthooks": []}
    environs["eio-sid"] = environ
    try:
        kept = environs["eio-sid"]
        assert not set(kept) & TRANSPORT_KEYS
        with app.request_context(kept):
            from flask import request

            assert request.headers.get("Authorization") == "Bearer abc"
            assert request.remote_addr == "10.0.0.7"
            assert request.args.get("transport") == "websocket"
    finally:
        del environs["eio-sid"]


def test_eventlet_connections_get_a_small_read_buffer(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eventlet's deprecation notice
        import eventlet.wsgi

    protocol = eventlet.wsgi.HttpProtocol
    monkeypatch.setattr(protocol, "rbufsize", protocol.rbufsize)
    write_buffer = protocol.wbufsize
    eventlet_patches.small_read_buffers()
    assert protocol.rbufsize == eventlet_patches.HTTP_READ_BUFFER
    assert protocol.wbufsize == write_buffer  # responses still leave in one send
