"""Open websockets read from eventlet's hub (app/realtime/patches/eventlet_websocket.py): the frame
parser, the reader on a real green socket pair, and the pool slot a websocket keeps.

That the server of `python wsgi.py` reads its websockets this way is checked in
tests/e2e/test_patches.py; its real clients (Python, Node, Chromium) are the rest of tests/e2e/."""

import os
import struct
import warnings

import pytest

from app.realtime.frames import FrameParser, close_status, unmask
from app.realtime.patches.eventlet_websocket import HubReader, connection_pool

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's deprecation notice
    import eventlet
    from eventlet.green import socket as green_socket
    from eventlet.websocket import RFC6455WebSocket

LIMIT = 1000


def frame(payload: bytes, opcode: int = 1, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """A client frame as RFC 6455 writes it."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, (0x80 if masked else 0) | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, size)
    else:
        head = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_a_message_split_at_any_byte_comes_out_once_and_whole():
    data = frame('42["ack",{"id":"é"}]'.encode())
    for cut in range(len(data) + 1):
        parser = FrameParser(LIMIT)
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == [(1, data_payload(data))], cut
        assert parser.buffer == b""


def data_payload(data: bytes) -> bytes:
    return FrameParser(LIMIT).feed(data)[0][1]


def test_several_frames_in_one_read_come_out_in_order_with_16_and_64_bit_lengths():
    parser = FrameParser(1 << 20)
    big, bigger = b"x" * 300, b"y" * 70_000
    out = parser.feed(frame(b"2") + frame(big, opcode=2) + frame(bigger) + frame(b"3"))
    assert out == [(1, b"2"), (2, big), (1, bigger), (1, b"3")]


def test_a_fragmented_message_is_joined_and_a_ping_between_its_frames_comes_out_first():
    parser = FrameParser(LIMIT)
    out = parser.feed(frame(b"hel", fin=False) + frame(b"ping", opcode=9) + frame(b"lo", opcode=0))
    assert out == [(9, b"ping"), (1, b"hello")]
    assert parser.parts is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (frame(b"2", masked=False), 1002),
        (frame(b"2", rsv=4), 1002),
        (frame(b"2", opcode=3), 1002),
        (frame(b"x" * 126, opcode=9), 1002),
        (frame(b"", opcode=8, fin=False), 1002),
        (frame(b"2", opcode=0), 1002),
        (frame(b"a", fin=False) + frame(b"b"), 1002),
        (frame(b"x" * (LIMIT + 1)), 1009),
        (frame(b"x" * 600, fin=False) + frame(b"x" * 600, opcode=0), 1009),
    ],
    ids=[
        "unmasked",
        "rsv bit without extension",
        "unknown opcode",
        "control frame over 125 bytes",
        "fragmented control frame",
        "continuation without a start",
        "new message inside a fragmented one",
        "frame over the limit",
        "fragments over the limit",
    ],
)
def test_frames_that_break_the_protocol_fail_the_connection_with_the_rfc_status(data, status):
    parser = FrameParser(LIMIT)
    assert parser.feed(frame(b"40") + data + frame(b"41")) == [(1, b"40")]  # what came before only
    assert parser.failure.status == status
    assert parser.feed(frame(b"42")) == []  # nothing is read after it


def test_a_frame_announcing_more_than_the_limit_fails_before_its_payload_arrives():
    parser = FrameParser(LIMIT)
    parser.feed(frame(b"x" * 70_000)[:14])  # 2 + 8 bytes of length + 4 of mask
    assert parser.failure.status == 1009


def test_unmask_matches_eventlets_per_byte_unmasking():
    for size in (0, 1, 3, 4, 5, 1000):
        payload, mask = os.urandom(size), os.urandom(4)
        assert unmask(payload, mask) == RFC6455WebSocket._apply_mask(payload, mask)


def test_a_close_frame_is_answered_with_its_status_or_a_protocol_error():
    assert close_status(b"") == 1000
    assert close_status(struct.pack("!H", 1001) + b"bye") == 1001
    assert close_status(b"\x03") == 1002  # one byte: no status
    assert close_status(struct.pack("!H", 999)) == 1002
    assert close_status(struct.pack("!H", 1000) + b"\xff") == 1002  # reason not UTF-8


class Reading:
    """A HubReader on the server end of a green socket pair; the test writes the client's end."""

    def __init__(self, stop_after: int | None = None):
        self.client, server = green_socket.socketpair()
        self.ws = RFC6455WebSocket(server, {}, max_frame_length=LIMIT)
        self.messages, self.ends, self.releases = [], 0, 0
        self.stop_after = stop_after
        self.reader = HubReader(self.ws, server, self.on_message, self.on_end, self.release)
        self.reader.start()

    def on_message(self, message) -> bool:
        self.messages.append(message)
        return self.stop_after is None or len(self.messages) < self.stop_after

    def on_end(self) -> None:
        self.ends += 1

    def release(self) -> None:
        self.releases += 1

    def received(self, size: int = 4096) -> bytes:
        with eventlet.Timeout(2):
            return self.client.recv(size)

    def settle(self) -> None:
        eventlet.sleep(0.05)


def test_messages_reach_the_owner_in_order_and_pings_are_answered():
    reading = Reading()
    reading.client.sendall(
        frame(b"40") + frame(b'42["a"]') + frame(b"hi", opcode=9) + frame(b"\x01", opcode=2)
    )
    reading.settle()
    assert reading.messages == ["40", '42["a"]', b"\x01"]
    assert reading.received() == b"\x8a\x02hi"  # the pong, unmasked, same payload
    reading.client.sendall(frame(b"3"))
    reading.settle()
    assert reading.messages[-1] == "3" and reading.ends == 0 and reading.releases == 0


def test_the_clients_close_is_answered_then_the_owner_ends_once_and_the_socket_closes():
    reading = Reading()
    reading.client.sendall(frame(struct.pack("!H", 1000), opcode=8))
    reading.settle()
    assert reading.received() == b"\x88\x02" + struct.pack("!H", 1000)
    assert reading.received() == b""  # closed
    assert (reading.ends, reading.releases) == (1, 1)


def test_the_end_of_the_stream_ends_the_websocket():
    reading = Reading()
    reading.client.sendall(frame(b"40"))
    reading.client.shutdown(green_socket.SHUT_WR)
    reading.settle()
    assert reading.messages == ["40"]
    assert (reading.ends, reading.releases) == (1, 1)
    assert reading.reader.listener is None


def test_a_broken_frame_closes_with_its_status_and_nothing_after_it_is_handled():
    reading = Reading()
    reading.client.sendall(frame(b"40") + frame(b"x", masked=False) + frame(b"41"))
    reading.settle()
    answer = reading.received()
    assert answer[0] == 0x88 and struct.unpack("!H", answer[2:4])[0] == 1002
    assert reading.messages == ["40"]
    assert (reading.ends, reading.releases) == (1, 1)


def test_invalid_utf8_in_a_text_message_closes_with_1007():
    reading = Reading()
    reading.client.sendall(frame(b"4\xff"))
    reading.settle()
    answer = reading.received()
    assert answer[0] == 0x88 and struct.unpack("!H", answer[2:4])[0] == 1007
    assert reading.messages == [] and reading.ends == 1


def test_the_owner_ends_the_websocket_by_refusing_a_message():
    reading = Reading(stop_after=1)
    reading.client.sendall(frame(b"40") + frame(b"41"))
    reading.settle()
    assert reading.messages == ["40"]
    assert (reading.ends, reading.releases) == (1, 1)


def test_a_detached_websocket_keeps_its_pool_slot_until_released():
    pool = connection_pool(2)
    released = []

    def request():
        pool.hold_slot()  # as a websocket leaving the WSGI server does

    pool.spawn(request).wait()
    eventlet.sleep(0)
    assert pool.free() == 1 and pool.running() == 0
    waiter = eventlet.spawn(lambda: (pool.waitall(), released.append(True)))
    eventlet.sleep(0.05)
    assert released == []  # a stop waits for the open websocket
    pool.release_slot()
    waiter.wait()
    assert pool.free() == 2 and released == [True]


def test_a_failure_while_handling_a_message_closes_the_websocket_and_frees_its_slot():
    reading = Reading()

    def failing(_message):
        raise RuntimeError("a bug")

    reading.reader.on_message = failing
    reading.client.sendall(frame(b"40"))
    reading.settle()
    answer = reading.received()
    assert answer[0] == 0x88 and struct.unpack("!H", answer[2:4])[0] == 1011
    assert (reading.ends, reading.releases) == (1, 1)
