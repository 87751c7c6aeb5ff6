"""End-to-end tests of the running server with real Socket.IO clients on the websocket transport."""

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager

import pytest
import requests
import socketio
import websocket

from tests.support.clients import connect
from tests.support.live_server import HTTP_TIMEOUT
from tests.support.server import STOP_TIMEOUT
from tests.support.tokens import bearer, forged_tokens
from tests.support.waiting import in_background, wait_for
from tests.support.wire import assert_wire_object, parse_time

# ---- helpers -----------------------------------------------------------------


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


# ---- delivery ----------------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "auth"])
def test_connected_user_gets_notification_live_and_offline_user_gets_it_stored(
    live_server, socket_client, via
):
    alice = connect(socket_client(), live_server, "alice", via=via)

    created = {n["userId"]: n for n in live_server.send(["alice", "bob"], "Deploy finished")}

    assert created["alice"]["status"] == "DELIVERED"
    assert created["bob"]["status"] == "PENDING"
    alice.wait_received(created["alice"]["id"])
    [event] = alice.new_notifications
    assert_wire_object(event, "alice", "Deploy finished")
    assert event == created["alice"]
    assert event["deliveredAt"] is not None
    assert alice.pending_batches == []
    assert live_server.statuses([created["alice"]["id"], created["bob"]["id"]]) == {
        created["alice"]["id"]: "DELIVERED",
        created["bob"]["id"]: "PENDING",
    }


def test_offline_user_gets_pending_on_connect(live_server, socket_client):
    sent = [live_server.send(["carol"], f"while away {i}")[0] for i in range(3)]
    assert [n["status"] for n in sent] == ["PENDING"] * 3

    carol = connect(socket_client(), live_server, "carol")

    wait_for(lambda: carol.pending_batches, message="a pending_notifications event")
    [live] = live_server.send(["carol"], "now online")
    carol.wait_received(live["id"])  # events are ordered: any other batch would be in by now
    [batch] = carol.pending_batches
    assert [n["id"] for n in batch] == [n["id"] for n in sent], "not one batch, oldest first"
    for notification, original in zip(batch, sent, strict=True):
        assert_wire_object(notification, "carol", original["message"])
        assert notification["createdAt"] == original["createdAt"]
    assert carol.new_notifications == [live]
    assert set(live_server.statuses([n["id"] for n in sent]).values()) == {"DELIVERED"}

    carol.disconnect()
    again = connect(socket_client(), live_server, "carol")
    [marker] = live_server.send(["carol"], "after reconnecting")
    again.wait_received(marker["id"])
    assert again.pending_batches == [], "pending notifications were sent a second time"
    assert again.notification_ids() == [marker["id"]]


def test_every_socket_of_a_user_gets_it_and_user_stays_online_until_the_last_closes(
    live_server, socket_client
):
    first = connect(socket_client(), live_server, "dave")
    second = connect(socket_client(), live_server, "dave")

    [both] = live_server.send(["dave"], "to both tabs")
    first.wait_received(both["id"])
    second.wait_received(both["id"])

    first_sid = first.get_sid()
    first.disconnect()
    live_server.wait_disconnected(first_sid)
    [one_left] = live_server.send(["dave"], "one tab left")
    assert one_left["status"] == "DELIVERED"
    second.wait_received(one_left["id"])
    assert live_server.statuses([one_left["id"]]) == {one_left["id"]: "DELIVERED"}

    second_sid = second.get_sid()
    second.disconnect()
    live_server.wait_disconnected(second_sid)
    [none_left] = live_server.send(["dave"], "no tab left")
    assert none_left["status"] == "PENDING"
    assert live_server.statuses([none_left["id"]]) == {none_left["id"]: "PENDING"}
    assert first.notification_ids() == [both["id"]]
    assert second.notification_ids() == [both["id"], one_left["id"]]


def test_user_never_receives_another_users_notification(live_server, socket_client):
    alice = connect(socket_client(), live_server, "alice")
    bob = connect(socket_client(), live_server, "bob")

    for_alice = [live_server.send(["alice"], f"for alice {i}")[0] for i in range(3)]
    [for_bob] = live_server.send(["bob"], "for bob")
    bob.wait_received(for_bob["id"])
    for notification in for_alice:
        alice.wait_received(notification["id"])

    assert bob.notification_ids() == [for_bob["id"]]
    assert alice.notification_ids() == [n["id"] for n in for_alice]
    listed = live_server.list_notifications("bob")
    assert [n["id"] for n in listed.json()] == [for_bob["id"]]


# ---- refused connections -----------------------------------------------------


BAD_TOKENS = ["missing", "garbage", "expired", "wrong key", "alg none"]


def _bad_token(kind, server):
    return None if kind == "missing" else forged_tokens(server.secret, "mallory")[kind]


def test_connections_with_bad_tokens_are_refused(live_server, socket_client):
    [waiting] = live_server.send(["mallory"], "not for an impostor")

    problems = []
    for kind in BAD_TOKENS:
        for via in ("header", "auth"):
            client = socket_client()
            try:
                connect(client, live_server, via=via, token=_bad_token(kind, live_server))
            except socketio.exceptions.ConnectionError:
                pass
            else:
                problems.append(f"{kind} token in {via}: connected")
            if not client.connect_errors:
                problems.append(f"{kind} token in {via}: no connect_error")
            if client.notifications():
                problems.append(f"{kind} token in {via}: got {client.events}")
    assert problems == []

    assert live_server.statuses([waiting["id"]]) == {waiting["id"]: "PENDING"}
    assert live_server.healthz().status_code == 200
    [later] = live_server.send(["mallory"], "still offline")
    assert later["status"] == "PENDING", "a refused socket counts its user as online"
    mallory = connect(socket_client(), live_server, "mallory")
    wait_for(lambda: mallory.pending_batches, message="the pending notifications of mallory")
    assert mallory.notification_ids() == [waiting["id"], later["id"]]


# ---- garbage on the wire -----------------------------------------------------

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


# ---- REST over the real server -----------------------------------------------


def test_rest_list_mark_read_and_delete(live_server):
    url = live_server.url + "/v1"
    erin = bearer(live_server.token("erin"))
    sent = [live_server.send(["erin"], f"message {i}")[0] for i in range(3)]
    [franks] = live_server.send(["frank"], "for frank")

    listed = requests.get(url + "/notifications", headers=erin, timeout=HTTP_TIMEOUT)
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()] == [n["id"] for n in reversed(sent)]

    page = requests.get(url + "/notifications?limit=2", headers=erin, timeout=HTTP_TIMEOUT)
    assert page.status_code == 200
    assert [n["id"] for n in page.json()] == [sent[2]["id"], sent[1]["id"]]
    assert "next" in page.links, page.headers
    rest = requests.get(page.links["next"]["url"], headers=erin, timeout=HTTP_TIMEOUT)
    assert [n["id"] for n in rest.json()] == [sent[0]["id"]]
    assert "next" not in rest.links

    assert requests.get(url + "/notifications", timeout=HTTP_TIMEOUT).status_code == 401
    bad_limit = requests.get(url + "/notifications?limit=0", headers=erin, timeout=HTTP_TIMEOUT)
    assert bad_limit.status_code == 400
    assert bad_limit.json()["error"]

    target = sent[0]["id"]
    read = requests.put(f"{url}/notifications/{target}/read", headers=erin, timeout=HTTP_TIMEOUT)
    assert read.status_code == 200
    assert read.json()["status"] == "READ"
    read_at = parse_time(read.json()["readAt"])
    again = requests.put(f"{url}/notifications/{target}/read", headers=erin, timeout=HTTP_TIMEOUT)
    assert again.status_code == 200
    assert parse_time(again.json()["readAt"]) == read_at
    assert live_server.statuses([target]) == {target: "READ"}

    for foreign in (franks["id"], "not-a-uuid", str(uuid.uuid4())):
        for method in (requests.put, requests.delete):
            path = f"{url}/notifications/{foreign}" + ("/read" if method is requests.put else "")
            response = method(path, headers=erin, timeout=HTTP_TIMEOUT)
            assert response.status_code == 404, (method.__name__, foreign, response.text)
            assert response.json()["error"] == "not_found"
    assert live_server.statuses([franks["id"]]) == {franks["id"]: "PENDING"}

    deleted = requests.delete(f"{url}/notifications/{target}", headers=erin, timeout=HTTP_TIMEOUT)
    assert deleted.status_code == 204
    gone = requests.delete(f"{url}/notifications/{target}", headers=erin, timeout=HTTP_TIMEOUT)
    assert gone.status_code == 404
    listed = requests.get(url + "/notifications", headers=erin, timeout=HTTP_TIMEOUT)
    assert target not in [n["id"] for n in listed.json()]

    not_admin = requests.post(
        url + "/admin/notifications",
        json={"userIds": ["erin"], "message": "self-service"},
        headers=erin,
        timeout=HTTP_TIMEOUT,
    )
    assert not_admin.status_code == 403
    assert len(live_server.rows("SELECT id FROM notifications WHERE user_id = 'erin'")) == 2


# ---- volume and interleaving -------------------------------------------------


# The admin sends faster than RATE_LIMIT_ADMIN allows by default, on purpose.
@pytest.mark.server_env(RATE_LIMIT_ADMIN="")
def test_many_notifications_in_a_row_each_arrive_exactly_once(live_server, socket_client):
    gina = connect(socket_client(), live_server, "gina")
    with requests.Session() as session:
        sent = [live_server.send(["gina"], f"n{i}", session)[0]["id"] for i in range(200)]
        [last] = live_server.send(["gina"], "the last one", session)

    gina.wait_received(last["id"])  # the socket's events are in order: all earlier ones are in
    counts = Counter(gina.notification_ids())
    assert set(counts) == set(sent) | {last["id"]}, f"missing: {set(sent) - set(counts)}"
    assert [i for i, n in counts.items() if n != 1] == [], "some arrived more than once"
    assert [n["message"] for n in gina.new_notifications[:200]] == [f"n{i}" for i in range(200)]
    assert set(live_server.statuses(sent).values()) == {"DELIVERED"}

    # The client acknowledged each one, so leaving does not put any back to PENDING.
    sid = gina.get_sid()
    gina.disconnect()
    live_server.wait_disconnected(sid)
    assert set(live_server.statuses(sent).values()) == {"DELIVERED"}


# One user reconnects faster than RATE_LIMIT_SOCKET_CONNECT allows by default, on purpose.
@pytest.mark.server_env(RATE_LIMIT_SOCKET_CONNECT="", RATE_LIMIT_ADMIN="")
def test_connects_and_disconnects_during_sends_lose_nothing(live_server, socket_client):
    user, cycles, sends = "ivan", 30, 60
    clients, sent, errors = [], [], []
    start = threading.Barrier(2, timeout=10)

    def churn():
        try:
            start.wait()
            for _ in range(cycles):
                client = socket_client()
                clients.append(client)
                connect(client, live_server, user)
                client.disconnect()
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def send():
        try:
            start.wait()
            with requests.Session() as session:
                for i in range(sends):
                    sent.append(live_server.send([user], f"burst {i}", session)[0]["id"])
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=churn), threading.Thread(target=send)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "the workers did not finish"
    assert errors == []
    assert len(sent) == sends

    final = connect(socket_client(), live_server, user)
    clients.append(final)
    [marker] = live_server.send([user], "after the churn")
    final.wait_received(marker["id"])

    counts = Counter(i for client in clients for i in client.notification_ids())
    missing = [i for i in sent if counts[i] == 0]
    assert missing == [], (
        f"{len(missing)} of {sends} notifications never reached any socket; their rows are "
        f"{dict(Counter(live_server.statuses(missing).values()))}"
    )
    # A client that leaves right after receiving may disconnect before its ack is
    # read: the server then sends that notification again on the next connect
    # (at least once; clients merge by id). What must never happen is a loss.
    assert max(counts[i] for i in sent) <= 2, "a notification arrived more than twice"
    assert live_server.rows(
        "SELECT count(*) FROM notifications WHERE user_id = ? AND status = 'PENDING'", (user,)
    ) == [(0,)]


# ---- stopping ----------------------------------------------------------------

HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
"""


@contextmanager
def write_lock_elsewhere(db_path):
    """Hold SQLite's write lock from another process until the block ends.

    The server's next write then waits for it inside the SQLite driver (see `stuck`).
    """
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def stuck(server) -> bool:
    """True while the server is waiting for the SQLite write lock.

    The SQLite driver blocks the whole eventlet process while it waits, so even
    `/healthz` (a read, which the lock does not block) goes unanswered.
    """
    try:
        requests.get(server.url + "/healthz", timeout=0.5)
    except requests.Timeout:
        return True
    return False


def test_sigterm_lets_a_running_request_finish(live_server):
    with write_lock_elsewhere(live_server.db_path):
        post = in_background(
            lambda: requests.post(
                live_server.url + "/v1/admin/notifications",
                json={"userIds": ["carol"], "message": "sent during a deploy"},
                headers=bearer(live_server.token("admin", admin=True)),
                timeout=30,
            )
        )
        wait_for(lambda: stuck(live_server), message="the request to be waiting to write")
        live_server.send_signal(signal.SIGTERM)
    post["thread"].join(timeout=30)

    exit_code = live_server.stop()
    stored = live_server.rows("SELECT status FROM notifications WHERE user_id = 'carol'")
    assert "error" not in post, (
        f"the running request got no answer ({post.get('error')!r}); stored rows: {stored}"
    )
    assert post["result"].status_code == 201, post["result"].text
    assert stored == [("PENDING",)]
    assert exit_code == 0, f"exit code {exit_code} (None: still running {STOP_TIMEOUT} s after SIGTERM)"


def test_sigterm_during_a_socket_connect_stops_the_server_and_loses_nothing(live_server, socket_client):
    [waiting] = live_server.send(["bob"], "stored while bob was away")
    bob = socket_client()
    with write_lock_elsewhere(live_server.db_path):
        connecting = in_background(lambda: connect(bob, live_server, "bob"))
        wait_for(
            lambda: stuck(live_server),
            message="the connect to be claiming bob's pending notification",
        )
        live_server.send_signal(signal.SIGTERM)

    exit_code = live_server.stop()
    connecting["thread"].join(timeout=30)

    status = live_server.statuses([waiting["id"]])[waiting["id"]]
    assert waiting["id"] in bob.notification_ids() or status == "PENDING", (
        f"the notification is {status} but never reached bob (connect: {connecting.get('error')!r})"
    )
    assert exit_code == 0, f"exit code {exit_code} (None: still running {STOP_TIMEOUT} s after SIGTERM)"
