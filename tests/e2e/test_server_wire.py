"""The real server keeps serving after garbage on a bare websocket, and leaks nothing back."""

import json
import time

import pytest
import websocket

from tests.support.clients import connect
from tests.support.live_server import HTTP_TIMEOUT


def raw_socket_url(server):
    return f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"


def open_raw(server):
    """A bare websocket that has completed the Engine.IO handshake."""
    ws = websocket.create_connection(raw_socket_url(server), timeout=HTTP_TIMEOUT)
    opening = ws.recv()
    assert opening.startswith("0{"), opening
    return ws


def send_raw(ws, frame):
    """Send one frame; False if the server has already closed the connection."""
    try:
        if isinstance(frame, bytes):
            ws.send_binary(frame)
        else:
            ws.send(frame)
    except (OSError, websocket.WebSocketException):
        return False
    return True


def read_raw(ws, done, timeout=10):
    """The bytes the server sends on `ws` until `done(data)` holds or the server closes it.

    Returns (data, closed_by_server). Reads below the websocket framing, so it
    also sees whatever a server writes into the upgraded connection.
    """
    sock = ws.sock
    sock.settimeout(0.05)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
        if done(data):
            return data, False
    pytest.fail(f"the server neither answered nor closed the socket within {timeout} s: {data!r}")


def answered_connect(data):
    return b'40{"sid"' in data or b"44{" in data or b"44/" in data


GARBAGE_FRAMES = [
    "hello, this is not engine.io",
    b"\x00\xff\xfe\x01 binary junk",
    "",
    "4{{{",
    "42[not json",
    '42["new_notification",{"id":"forged"}]',
    "41",
    "49",
    "40/no-such-namespace,",
    "4" + "x" * 10_000,
]


def test_server_keeps_serving_after_garbage_frames(live_server, socket_client):
    for frame in GARBAGE_FRAMES:
        ws = open_raw(live_server)
        try:
            send_raw(ws, frame)
            # A valid connect after the junk: its answer (or a closed socket) shows
            # the server has dealt with the junk.
            if send_raw(ws, "40" + json.dumps({"token": live_server.token("raw")})):
                read_raw(ws, answered_connect)
        finally:
            ws.close()

    assert live_server.healthz().status_code == 200
    alice = connect(socket_client(), live_server, "alice")
    [notification] = live_server.send(["alice"], "still working")
    alice.wait_received(notification["id"])
    assert alice.notification_ids() == [notification["id"]]


def test_malformed_frame_gets_no_server_traceback_back(live_server):
    ws = open_raw(live_server)
    try:
        send_raw(ws, "hello, this is not engine.io")
        if send_raw(ws, "40" + json.dumps({"token": live_server.token("raw")})):
            data, _closed = read_raw(ws, answered_connect)
        else:
            data = b""
    finally:
        ws.close()

    leaked = b"Traceback" in data or b".py" in data
    assert not leaked, "the server sent its stack trace to the client:\n" + data[:400].decode(
        errors="replace"
    )


def test_socket_dropped_for_a_malformed_frame_no_longer_counts_as_online(live_server, socket_client):
    ws = open_raw(live_server)
    try:
        assert send_raw(ws, "40" + json.dumps({"token": live_server.token("mallory")}))
        data, _closed = read_raw(ws, answered_connect)
        assert b'40{"sid"' in data, data
        send_raw(ws, "hello, this is not engine.io")
        # Wait for the server's reaction: it closes the connection over the protocol error.
        _data, closed = read_raw(ws, lambda _data: False)
        assert closed
    finally:
        ws.close()

    [after] = live_server.send(["mallory"], "sent after the socket was dropped")
    mallory = connect(socket_client(), live_server, "mallory")
    assert after["status"] == "PENDING", (
        "the dropped socket still counts as online: the notification was marked "
        "DELIVERED and sent to a closed connection"
    )
    mallory.wait_received(after["id"])


def test_websocket_framing_fragments_pings_and_close_are_handled_as_rfc_6455_says(live_server):
    """The reader of open websockets (app/realtime/frames.py) on the real server: a CONNECT sent
    in three fragments with a ping between them, then the client's close."""
    ws = websocket.create_connection(
        raw_socket_url(live_server),
        timeout=HTTP_TIMEOUT,
        header=[f"Authorization: Bearer {live_server.token('erin')}"],
    )
    assert ws.recv().startswith("0{")
    ws.send_frame(websocket.ABNF.create_frame("4", websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.ping("are you there")
    ws.send_frame(websocket.ABNF.create_frame("0", websocket.ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame("", websocket.ABNF.OPCODE_CONT, fin=1))
    opcode, payload = ws.recv_data(control_frame=True)
    assert (opcode, payload) == (websocket.ABNF.OPCODE_PONG, b"are you there")
    answer = ws.recv()
    assert answer.startswith('40{"sid"'), answer
    sid = json.loads(answer[2:])["sid"]
    ws.send_close(status=1000)
    opcode, payload = ws.recv_data(control_frame=True)
    while opcode == websocket.ABNF.OPCODE_TEXT:  # the events that follow a connect (unread_count)
        opcode, payload = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and payload[:2] == (1000).to_bytes(2, "big")
    assert ws.sock.recv(1) == b"", "the server did not close the connection after the close handshake"
    live_server.wait_disconnected(sid)


def test_a_frame_that_breaks_rfc_6455_closes_with_a_protocol_error_and_the_server_serves_on(
    live_server, socket_client
):
    ws = open_raw(live_server)
    ws.sock.sendall(b"\x81\x02" + b"40")  # an unmasked client frame
    data, _closed = read_raw(ws, lambda data: data.startswith(b"\x88"))
    assert data[:4] == b"\x88" + bytes([len(data) - 2]) + (1002).to_bytes(2, "big"), data
    client = socket_client()
    connect(client, live_server, "frank")
    assert client.connected
