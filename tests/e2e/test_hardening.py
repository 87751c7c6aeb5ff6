"""Security regressions against the real server (`python wsgi.py`), over real TCP, HTTP and websocket.

Requests that must be answered, reserved Socket.IO events, deadlines and rate limits:
each test fails on a server that lets a client hold a connection, a pool slot or
someone else's presence for ever, or use the service without limit.
"""

import json
import re
import socket
import time
from functools import partial

import psutil
import pytest
import requests
import socketio
import websocket

from tests.support.clients import connect as connect_with
from tests.support.live_server import HTTP_TIMEOUT
from tests.support.tokens import mint_token
from tests.support.waiting import wait_for

# Seconds within which the server must answer, or close a connection, where the bug is
# that it never does. Far above the deadlines the tests configure (2 to 5 s).
NEVER = 10
DRIP_INTERVAL = 0.5  # seconds between the bytes of a slowly sent header
ENGINEIO_BUFFER_LIMIT = 1_000_000  # Flask-SocketIO's default max_http_buffer_size

# Deadlines short enough for a test, and an HTTP socket timeout well below Engine.IO's
# 25 s ping interval: kept for the tests of plain HTTP connections only.
SHORT_DEADLINES = {"HTTP_IDLE_TIMEOUT": 2, "HTTP_HEADER_TIMEOUT": 2, "HTTP_SOCKET_TIMEOUT": 5}

# Every socket of this module sends its token in the `auth` payload.
connect = partial(connect_with, via="auth")


# ---- helpers -----------------------------------------------------------------


def notify(server, user_id, message):
    """Create one notification for `user_id`; the stored notification object."""
    [notification] = server.send([user_id], message)
    return notification


def refused(client, server, user_id=None, token=None):
    """Whether the server refuses `client`'s connection (with a `connect_error`)."""
    try:
        connect(client, server, user_id, token=token)
    except socketio.exceptions.ConnectionError:
        assert client.connect_errors, "refused without a connect_error"
        return True
    return False


def assert_too_many_requests(response):
    """An HTTP 429 as every rate limit answers: Retry-After in seconds and the JSON error envelope."""
    assert response.status_code == 429, f"{response.status_code} {response.text}"
    retry_after = response.headers.get("Retry-After", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, f"Retry-After: {retry_after!r}"
    body = response.json()
    assert body["error"] == "too_many_requests", body
    assert isinstance(body.get("message"), str) and body["message"], body


class RawEngineIO:
    """One Engine.IO session driven packet by packet, over a bare websocket or HTTP long-polling.

    Reading answers the server's pings ("2" with "3") and the acknowledgement requests
    of its events, records the Socket.IO events in `.events` as (name, args), and
    notices when the server ends the session (`.closed`).
    """

    def __init__(self, server, transport="websocket"):
        self.transport = transport
        self.closed = False
        self.events = []
        self.sid = None  # the Socket.IO sid, once connected
        address = f"127.0.0.1:{server.port}/socket.io/?EIO=4&transport={transport}"
        if transport == "websocket":
            self.ws = websocket.create_connection("ws://" + address, timeout=HTTP_TIMEOUT)
            opening = self.ws.recv()
        else:
            self.http = requests.Session()
            opening = self.http.get("http://" + address, timeout=HTTP_TIMEOUT).text
        assert opening.startswith("0{"), opening
        self.eio_sid = json.loads(opening[1:])["sid"]
        self.url = f"http://{address}&sid={self.eio_sid}"

    def send(self, *packets):
        """Send packets; False when the server has closed the session."""
        try:
            if self.transport == "websocket":
                for encoded in packets:
                    self.ws.send(encoded)
                return True
            response = self.http.post(
                self.url,
                data="\x1e".join(packets).encode(),
                headers={"Content-Type": "text/plain;charset=UTF-8"},
                timeout=HTTP_TIMEOUT,
            )
        except (OSError, websocket.WebSocketException, requests.ConnectionError):
            self.closed = True
            return False
        self.closed = self.closed or response.status_code != 200
        return not self.closed

    def receive(self, timeout):
        """The packets that arrive within `timeout` s (one read), pings and no-ops left out."""
        try:
            if self.transport == "websocket":
                self.ws.settimeout(max(timeout, 0.01))
                frame = self.ws.recv()
                self.closed = frame == ""  # a close frame
                encoded = [] if self.closed else [frame]
            else:
                response = self.http.get(self.url, timeout=max(timeout, 0.01))
                self.closed = response.status_code != 200  # 400: no such session (any more)
                encoded = [] if self.closed else response.text.split("\x1e")
        except (TimeoutError, websocket.WebSocketTimeoutException, requests.Timeout):
            return []
        except (OSError, websocket.WebSocketException, requests.ConnectionError):
            self.closed = True
            return []
        packets = []
        for packet in encoded:
            if packet == "2":
                self.send("3")
            elif packet == "1":
                self.closed = True
            elif packet not in ("", "6"):
                self._record(packet)
                packets.append(packet)
        return packets

    def _record(self, packet):
        event = re.fullmatch(r"42(\d*)(\[.*)", packet, re.DOTALL)
        if event:
            name, *args = json.loads(event[2])
            self.events.append((name, args))
            if event[1]:
                self.send(f"43{event[1]}[]")

    def wait_for_packet(self, predicate, what, timeout=NEVER):
        """Read until a packet satisfies `predicate`; return it. Fails on timeout or close."""
        deadline = time.monotonic() + timeout
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            for packet in self.receive(left):
                if predicate(packet):
                    return packet
        pytest.fail(
            f"{what}: " + ("the server closed the session" if self.closed else f"none in {timeout} s")
        )

    def wait_closed(self, timeout=NEVER):
        """Read until the server ends the session or `timeout` s pass; whether it ended."""
        deadline = time.monotonic() + timeout
        while not self.closed and (left := deadline - time.monotonic()) > 0:
            self.receive(left)
        return self.closed

    def connect(self, token):
        """Send the Socket.IO CONNECT of namespace "/" with `auth={"token": token}`; the sid."""
        self.send("40" + json.dumps({"token": token}))
        answer = self.wait_for_packet(lambda p: p.startswith(("40", "44")), "the answer to CONNECT")
        assert answer.startswith("40{"), f"connection refused: {answer}"
        self.sid = json.loads(answer[2:])["sid"]
        return self.sid

    def emit(self, *args):
        """Send a Socket.IO EVENT packet `42[name, ...]`, whatever its name."""
        return self.send("42" + json.dumps(list(args)))

    def sync(self):
        """Wait until the server has read everything sent so far.

        A CONNECT to a namespace nobody serves is answered at once, in order with the
        packets before it; it also shows the session is still up.
        """
        self.send("40/sync,")
        self.wait_for_packet(lambda p: p.startswith("44/sync,"), "the answer to a CONNECT of /sync")

    def notifications(self):
        """Every notification received, live or pending."""
        found = []
        for name, args in self.events:
            if name == "new_notification":
                found.append(args[0])
            elif name == "pending_notifications":
                found.extend(args[0])
        return found

    def close(self):
        if self.transport == "websocket":
            self.ws.close()
        else:
            if not self.closed:
                self.send("1")
            self.http.close()


def open_tcp(server, data=b""):
    """A TCP connection to the server that has sent `data` (raw bytes, maybe nothing)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT)
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock, timeout=NEVER, drip=b""):
    """Read `sock` until the server closes it or `timeout` s pass: (closed, the bytes read).

    Meanwhile `drip` is sent one byte every DRIP_INTERVAL s (a client sending its
    headers slowly). Closed means an end of file, or a reset.
    """
    deadline = time.monotonic() + timeout
    data = b""
    while (left := deadline - time.monotonic()) > 0:
        if drip:
            try:
                sock.sendall(drip[:1])
            except OSError:
                return True, data
            drip = drip[1:]
        sock.settimeout(min(left, DRIP_INTERVAL))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def status_line(sock, timeout=NEVER):
    """The first line of the server's answer on `sock`, or None if none comes within `timeout` s."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        return None
    except OSError:
        pass
    return data.split(b"\r\n", 1)[0].decode(errors="replace") or None


def close_wait_connections(server):
    """The server process's TCP connections in CLOSE_WAIT: closed by the client, never by the server."""
    process = psutil.Process(server.pid)
    return [c for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_CLOSE_WAIT]


# ---- 1. Engine.IO polling POSTs are answered ------------------------------------


def polling_post(body, content_length=None):
    """Build a raw POST that sends `body`, announcing `content_length` bytes (default: its length)."""

    def build(sid):
        length = len(body) if content_length is None else content_length
        head = (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body

    return build


BAD_POLLING_POSTS = {
    "a Content-Length over the buffer limit, no body": polling_post(b"", 2 * ENGINEIO_BUFFER_LIMIT),
    "a PING packet": polling_post(b"2"),
    "a NOOP packet": polling_post(b"6"),
}


@pytest.mark.server_env(MAX_CONNECTIONS=40)
def test_polling_posts_that_break_the_protocol_are_answered_and_free_their_connection(live_server):
    kinds = list(BAD_POLLING_POSTS.items())
    for i in range(100):
        what, build = kinds[i % len(kinds)]
        handshake = requests.get(
            live_server.url + "/socket.io/?EIO=4&transport=polling", timeout=HTTP_TIMEOUT
        )
        assert handshake.status_code == 200 and handshake.text.startswith("0{"), (
            f"handshake #{i}: {handshake.status_code} {handshake.text[:200]}"
        )
        sid = json.loads(handshake.text[1:])["sid"]
        sock = open_tcp(live_server, build(sid))
        try:
            answer = status_line(sock)
        finally:
            sock.close()
        assert answer is not None, f"POST #{i} with {what} got no answer within {NEVER} s"
        assert answer.startswith("HTTP/1.1 400"), f"POST #{i} with {what}: {answer}"

    assert requests.get(live_server.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200
    wait_for(
        lambda: not close_wait_connections(live_server),
        timeout=5,
        message=lambda: f"no connection in CLOSE_WAIT; {len(close_wait_connections(live_server))} are",
    )


# ---- 2. reserved events from clients are ignored --------------------------------


def emit_connect(raw, token):
    """Emit an EVENT named `connect` carrying `token`, in both shapes a server might read it from.

    Flask-SocketIO gives a connect handler the event's second argument as `auth` (the
    first is the WSGI environ when python-socketio calls it), so the second shape is
    the one that reaches the handler as a real connect's auth payload.
    """
    raw.emit("connect", {"token": token})
    raw.emit("connect", {"token": token}, {"token": token})


def test_socket_that_emits_disconnect_stays_connected_and_online(live_server):
    alice = RawEngineIO(live_server)
    try:
        alice.connect(live_server.token("alice"))
        alice.emit("disconnect")
        alice.sync()

        sent = notify(live_server, "alice", "still here")
        assert sent["status"] == "DELIVERED", (
            "alice's socket is connected, yet after it emitted `disconnect` she counts as offline"
        )
        alice.wait_for_packet(lambda p: sent["id"] in p, "the notification, live on alice's socket")
    finally:
        alice.close()


@pytest.mark.server_env(MAX_SOCKETS_PER_USER=3, RATE_LIMIT_SOCKET_EVENTS="")
def test_emitting_disconnect_does_not_free_a_slot_of_the_per_user_socket_limit(live_server, socket_client):
    first = RawEngineIO(live_server)
    try:
        first.connect(live_server.token("alice"))
        for _ in range(100):
            first.emit("disconnect")
        first.sync()

        accepted = [not refused(socket_client(), live_server, "alice") for _ in range(3)]
        assert accepted == [True, True, False], (
            f"with MAX_SOCKETS_PER_USER=3 and one socket open, of three more sockets: accepted {accepted}"
        )
        first.sync()  # the first socket is still connected
    finally:
        first.close()


def test_emitting_connect_with_another_users_token_does_not_join_their_room(live_server, socket_client):
    bob = connect(socket_client(), live_server, "bob")
    alice = RawEngineIO(live_server)
    try:
        alice.connect(live_server.token("alice"))
        emit_connect(alice, live_server.token("bob"))
        alice.sync()

        for_bob = notify(live_server, "bob", "for bob only")
        for_alice = notify(live_server, "alice", "for alice")
        wait_for(
            lambda: for_bob["id"] in bob.notification_ids(), message="bob's notification on bob's socket"
        )
        # Emitted after bob's: once alice has hers, any of bob's sent to her socket is in too.
        alice.wait_for_packet(lambda p: for_alice["id"] in p, "alice's notification on her socket")
        assert [n["userId"] for n in alice.notifications()] == ["alice"], (
            f"alice's socket received bob's notifications: {alice.notifications()}"
        )
        alice.sync()  # still connected
    finally:
        alice.close()


@pytest.mark.parametrize("token_of", ["alice", "bob"])
def test_socket_that_emitted_connect_leaves_no_ghost_presence(live_server, socket_client, token_of):
    tab = RawEngineIO(live_server)
    try:
        sid = tab.connect(live_server.token("alice"))
        emit_connect(tab, live_server.token(token_of))
        tab.sync()
    finally:
        tab.close()
    live_server.wait_disconnected(sid)

    # Alice has no socket open: the notification must wait for her, not go to a ghost.
    sent = notify(live_server, "alice", "after the tab closed")
    alice = connect(socket_client(), live_server, "alice")
    wait_for(
        lambda: sent["id"] in alice.notification_ids(),
        message=lambda: (
            f"the notification on alice's next socket; it was stored {sent['status']} and is now "
            f"{live_server.rows('SELECT status FROM notifications WHERE id = ?', (sent['id'],))}"
        ),
    )


# ---- 3. deadlines ------------------------------------------------------------------


@pytest.mark.server_env(SOCKETIO_CONNECT_TIMEOUT=2)
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_engineio_session_without_socketio_connect_is_closed_after_the_connect_timeout(
    live_server, transport
):
    connected = RawEngineIO(live_server, transport)
    idle = None
    try:
        connected.connect(live_server.token("carol"))
        idle = RawEngineIO(live_server, transport)  # answers pings, never sends CONNECT
        assert idle.wait_closed(), (
            f"an Engine.IO session that never sent a Socket.IO CONNECT is still open {NEVER} s later "
            "(SOCKETIO_CONNECT_TIMEOUT=2)"
        )
        # Carol's session is older than the one just closed: past the same deadline, it stays.
        sent = notify(live_server, "carol", "still connected")
        assert sent["status"] == "DELIVERED"
        connected.wait_for_packet(lambda p: sent["id"] in p, "carol's notification on her session")
    finally:
        connected.close()
        if idle is not None:
            idle.close()


SLOW_REQUEST_LINE = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
SLOW_HEADER = b"X-Slow: " + b"a" * 1000  # one byte every DRIP_INTERVAL s: longer than any test
HTTP_CLIENTS = {
    "silent": "that never sent a byte",
    "slow_headers": "that sends its headers a byte every half second",
    "idle_keep_alive": "kept alive, idle after one answered request",
}


@pytest.mark.server_env(**SHORT_DEADLINES)
@pytest.mark.parametrize("client", list(HTTP_CLIENTS))
def test_http_connection_without_a_request_in_time_is_closed(live_server, client):
    sent, drip = {
        "silent": (b"", b""),
        "slow_headers": (SLOW_REQUEST_LINE, SLOW_HEADER),
        "idle_keep_alive": (SLOW_REQUEST_LINE + b"\r\n", b""),
    }[client]
    sock = open_tcp(live_server, sent)
    try:
        closed, data = closed_by_server(sock, drip=drip)
    finally:
        sock.close()
    if client == "idle_keep_alive":
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert closed, (
        f"a connection {HTTP_CLIENTS[client]} is still open {NEVER} s later "
        "(HTTP_IDLE_TIMEOUT=2, HTTP_HEADER_TIMEOUT=2, HTTP_SOCKET_TIMEOUT=5)"
    )


@pytest.mark.server_env(HTTP_IDLE_TIMEOUT=2, HTTP_HEADER_TIMEOUT=2, HTTP_SOCKET_TIMEOUT=60)
def test_websocket_outlives_the_http_idle_and_header_deadlines(live_server, socket_client):
    dave = connect(socket_client(), live_server, "dave")
    connected_at = time.monotonic()
    silent = open_tcp(live_server)
    try:
        closed, _data = closed_by_server(silent)
    finally:
        silent.close()
    assert closed, f"a silent connection is still open {NEVER} s later (HTTP_IDLE_TIMEOUT=2)"

    # The socket says nothing until Engine.IO's first ping (25 s): 8 s of silence on an
    # upgraded connection must not count as an idle HTTP connection.
    while time.monotonic() - connected_at < 8:
        assert dave.connected, "the server closed a silent websocket (an HTTP deadline applied to it)"
        time.sleep(0.1)
    sent = notify(live_server, "dave", "after eight quiet seconds")
    assert sent["status"] == "DELIVERED"
    wait_for(lambda: sent["id"] in dave.notification_ids(), message="the notification on dave's socket")


@pytest.mark.server_env(MAX_CONNECTIONS=20, **SHORT_DEADLINES)
def test_silent_connections_cannot_hold_every_slot(live_server):
    silent = [open_tcp(live_server) for _ in range(40)]
    try:
        # After the header deadline the silent connections are closed and their slots freed.
        try:
            health = requests.get(live_server.url + "/healthz", timeout=(HTTP_TIMEOUT, 2 * NEVER))
        except requests.Timeout:
            health = None
        assert health is not None, (
            f"with 40 silent connections and MAX_CONNECTIONS=20, /healthz got no answer in {2 * NEVER} s"
        )
        assert health.status_code == 200
    finally:
        for sock in silent:
            sock.close()


# ---- 4. rate limits -----------------------------------------------------------------

FORGING_KEY = "not-the-server-secret-0123456789abcdef"  # signs tokens the server must reject


def test_bad_tokens_from_an_address_never_lock_out_its_valid_tokens(live_server, socket_client):
    """Default settings: 200 bad tokens from one address (a NAT, a proxy), then valid ones from it."""
    forged = mint_token(FORGING_KEY, "mallory")
    answers = [live_server.list_notifications("mallory", token=forged) for _ in range(150)]
    statuses = [a.status_code for a in answers]
    assert set(statuses[:30]) == {401}, statuses[:30]
    assert_too_many_requests(answers[-1])
    bad_connects = [refused(socket_client(), live_server, token=forged) for _ in range(50)]
    assert all(bad_connects), "a socket with a forged token was accepted"

    for user in ("alice", "bob", "carol"):
        listed = live_server.list_notifications(user)
        assert listed.status_code == 200, f"{listed.status_code} {listed.text}"
        assert not refused(socket_client(), live_server, user), (
            "a valid token was refused because of other tokens' failures from the same address"
        )
    assert live_server.admin_post(["alice"], "still served").status_code == 201
    assert_too_many_requests(live_server.list_notifications("mallory", token=forged))


@pytest.mark.server_env(RATE_LIMIT_ADMIN="5/minute")
def test_admin_over_the_rate_limit_is_refused_and_stores_nothing(live_server):
    answers = [live_server.admin_post(["erin"], f"message {i}") for i in range(6)]
    assert [a.status_code for a in answers[:5]] == [201] * 5, [a.text for a in answers[:5]]
    assert_too_many_requests(answers[5])
    assert live_server.rows("SELECT count(*) FROM notifications") == [(5,)]
    listed = live_server.list_notifications("erin")
    assert listed.status_code == 200
    assert len(listed.json()) == 5


@pytest.mark.server_env(RATE_LIMIT_SOCKET_CONNECT="3/minute")
def test_socket_connects_over_the_rate_limit_are_refused_for_that_user_only(live_server, socket_client):
    for i in range(3):
        client = socket_client()
        assert not refused(client, live_server, "frank"), f"connect #{i + 1} of 3 refused"
        client.disconnect()
    assert refused(socket_client(), live_server, "frank"), (
        "the 4th connect of one user within a minute was accepted (RATE_LIMIT_SOCKET_CONNECT=3/minute)"
    )
    assert not refused(socket_client(), live_server, "gina"), "another user's connect was refused"


@pytest.mark.server_env(RATE_LIMIT_SOCKET_EVENTS="5/second")
def test_socket_flooding_events_is_disconnected_and_a_calm_one_is_not(live_server, socket_client):
    calm = connect(socket_client(), live_server, "henry")
    flood = connect(socket_client(), live_server, "ivan")
    for i in range(100):
        try:
            flood.emit("hello", {"n": i})
        except socketio.exceptions.SocketIOError:
            break  # already disconnected
    wait_for(
        lambda: not flood.connected,
        message="the server to disconnect a socket that sent 100 events at once (5/second allowed)",
    )

    for i in range(8):  # two a second
        calm.emit("hello", {"n": i})
        time.sleep(0.5)
        assert calm.connected, f"a socket that sent {i + 1} events at two a second was disconnected"
    sent = notify(live_server, "henry", "still connected")
    assert sent["status"] == "DELIVERED"
    wait_for(lambda: sent["id"] in calm.notification_ids(), message="the notification on the calm socket")
