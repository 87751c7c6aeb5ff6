"""What a client reads first, at the byte level: the websocket upgrade and the Socket.IO connect.

Clients without a receive buffer (raw websocket clients, some mobile libraries) read the
packets in the order they arrive, and every browser offers websocket compression: the
real server (`python wsgi.py`) is driven over a bare TCP socket so nothing in between
reorders, buffers or negotiates on the client's side.
"""

import base64
import json
import os
import socket
import struct
import zlib

import pytest

from tests.support.live_server import HTTP_TIMEOUT
from tests.support.tokens import mint_token

BROWSER_EXTENSIONS = "permessage-deflate; client_max_window_bits"  # what Chromium offers


class RawWebsocket:
    """A websocket opened and read frame by frame over a bare TCP socket (RFC 6455, RFC 7692)."""

    def __init__(self, server, headers=(), extensions=BROWSER_EXTENSIONS):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *([f"Sec-WebSocket-Extensions: {extensions}"] if extensions else []),
            *headers,
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status, *header_lines = head.split("\r\n")
        assert " 101 " in status, head
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.compressed_sizes: list[int] = []  # payload bytes of each message that came compressed
        self.plain_sizes: list[int] = []

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def receive(self) -> str:
        """The next text message (an Engine.IO packet), inflated if it came compressed."""
        first, second = self._read_exactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read_exactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read_exactly(8))[0]
        payload = self._read_exactly(size)
        if first & 0x40:  # RSV1: compressed (permessage-deflate)
            self.compressed_sizes.append(size)
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        else:
            self.plain_sizes.append(size)
        return payload.decode()

    def send(self, text: str) -> None:
        """One masked, uncompressed text frame."""
        data, mask = text.encode(), os.urandom(4)
        size = len(data)
        header = bytes([0x81]) + (
            bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
        )
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def packets(self, count: int) -> list[str]:
        """The next `count` Engine.IO packets other than pings (which are answered)."""
        found = []
        while len(found) < count:
            packet = self.receive()
            if packet == "2":
                self.send("3")
            else:
                found.append(packet)
        return found

    def close(self) -> None:
        self.sock.close()


def test_an_upgrade_offering_compression_gets_none_by_default(live_server):
    ws = RawWebsocket(live_server)
    try:
        assert "sec-websocket-extensions" not in ws.headers, ws.headers
        [opening] = ws.packets(1)
        assert opening.startswith("0{") and ws.compressed_sizes == []
    finally:
        ws.close()


@pytest.mark.server_env(WEBSOCKET_COMPRESSION=1, WEBSOCKET_COMPRESSION_THRESHOLD=1024)
def test_compression_when_turned_on_leaves_small_messages_alone(live_server):
    ws = RawWebsocket(live_server)
    try:
        assert ws.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate"), ws.headers
        assert ws.packets(1)[0].startswith("0{")
        ws.send("40" + json.dumps({"token": live_server.token("zoe")}))
        assert ws.packets(2)[0].startswith("40{")  # then unread_count
        assert ws.compressed_sizes == [], "a message under the threshold was compressed"
        big = "x" * 1500
        live_server.send(["zoe"], big)
        events = [json.loads(p[2:]) for p in ws.packets(2)]
        assert [name for name, _ in events] == ["new_notification", "unread_count"]
        assert events[0][1]["message"] == big
        assert len(ws.compressed_sizes) == 1 and ws.compressed_sizes[0] < 1000, ws.compressed_sizes
    finally:
        ws.close()


def connect_order(live_server, user, *, header: bool) -> list[str]:
    """The names of what a raw client reads after its CONNECT: `connect`, then the events."""
    token = live_server.token(user)
    headers = [f"Authorization: Bearer {token}"] if header else []
    ws = RawWebsocket(live_server, headers=headers)
    try:
        assert ws.packets(1)[0].startswith("0{")
        ws.send("40" if header else "40" + json.dumps({"token": token}))
        names = []
        for packet in ws.packets(3):
            if packet.startswith("40{"):
                names.append("connect")
            elif packet.startswith("42"):
                names.append(json.loads(packet[2:])[0])
            else:
                names.append(packet)
        return names
    finally:
        ws.close()


@pytest.mark.parametrize("header", [True, False], ids=["header-token", "auth-payload"])
def test_connect_comes_before_pending_notifications_and_unread_count(live_server, header):
    user = "wren-header" if header else "wren-auth"
    live_server.send([user], "sent while offline")
    order = connect_order(live_server, user, header=header)
    assert order == ["connect", "pending_notifications", "unread_count"]


def test_a_refused_connect_is_sent_no_event(live_server):
    live_server.send(["yves"], "not for a forged token")
    forged = mint_token("not-the-server-secret-0123456789abcdef", "yves")
    ws = RawWebsocket(live_server)
    try:
        assert ws.packets(1)[0].startswith("0{")
        ws.send("40" + json.dumps({"token": forged}))
        [answer] = ws.packets(1)
        assert answer.startswith("44"), answer
        ws.send("40/nowhere,")  # answered in order: nothing else was queued before it
        assert ws.packets(1)[0].startswith("44/nowhere,")
    finally:
        ws.close()
