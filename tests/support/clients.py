"""The one recording Socket.IO client of the tests: a python-socketio client that keeps what it receives."""

import contextlib
import socket
import struct
import threading
import time
from collections import Counter

import socketio

from app.protocol import NEW_NOTIFICATION, PENDING_NOTIFICATIONS, UNREAD_COUNT
from tests.support.tokens import bearer
from tests.support.waiting import wait_for

CONNECT_TIMEOUT = 10  # seconds for a Socket.IO connection to be accepted or refused
DELIVERY_TIMEOUT = 10  # seconds for a notification to reach a socket


class RecordingClient(socketio.Client):
    """A `socketio.Client` (no reconnection) that records every event it receives, in order.

    `.new_notifications` holds the payloads of `new_notification`, `.pending_batches`
    those of `pending_notifications` (one list per event), `.connect_errors` those of
    `connect_error`, `.events` every event as `(name, payload)`, and `.counts` how many
    times each notification id arrived by either event; `.arrivals` holds every arrival of
    a notification as `(time.time(), event name, notification)`. `.disconnected` is set
    when the connection ends. While `.ack_gate` is an unset Event, `new_notification`
    handlers wait for it before returning, which is when python-socketio acknowledges the
    event. `drop()` and `go_silent()` end a connection the ways a network does.
    """

    def __init__(self, user_id: str | None = None, name: str = "", **kwargs):
        super().__init__(reconnection=False, **kwargs)
        self.user_id = user_id
        self.name = name or user_id or "client"
        self.new_notifications: list[dict] = []
        self.pending_batches: list[list[dict]] = []
        self.connect_errors: list = []
        self.events: list[tuple[str, object]] = []
        self.counts: Counter[str] = Counter()
        self.arrivals: list[tuple[float, str, dict]] = []
        self.disconnected = threading.Event()
        self.ack_gate: threading.Event | None = None
        self._silenced: threading.Event | None = None  # set again to end a silent connection
        self._lock = threading.Lock()
        self.on(NEW_NOTIFICATION, self._on_new)
        self.on(PENDING_NOTIFICATIONS, self._on_pending)
        self.on("connect_error", self._on_connect_error)
        self.on("disconnect", self._on_disconnect)
        self.on("*", self._on_other)

    def __repr__(self) -> str:
        return f"<client {self.name}>"

    @staticmethod
    def _payload(args):
        return args[0] if len(args) == 1 else list(args)

    def _on_new(self, *args):
        payload = self._payload(args)
        with self._lock:
            self.events.append((NEW_NOTIFICATION, payload))
            self.new_notifications.append(payload)
            self.counts[payload["id"]] += 1
            self.arrivals.append((time.time(), NEW_NOTIFICATION, payload))
        gate = self.ack_gate
        if gate is not None:
            gate.wait(CONNECT_TIMEOUT * 3)

    def _on_pending(self, *args):
        payload = self._payload(args)
        with self._lock:
            self.events.append((PENDING_NOTIFICATIONS, payload))
            self.pending_batches.append(payload)
            now = time.time()
            for notification in payload:
                self.counts[notification["id"]] += 1
                self.arrivals.append((now, PENDING_NOTIFICATIONS, notification))

    def _on_connect_error(self, *args):
        payload = self._payload(args)
        with self._lock:
            self.events.append(("connect_error", payload))
            self.connect_errors.append(payload)

    def _on_disconnect(self, *_args):
        self.disconnected.set()

    def _on_other(self, name, *args):
        with self._lock:
            self.events.append((name, self._payload(args)))

    # ---- connecting --------------------------------------------------------

    def open(
        self,
        url: str,
        token: str | None,
        *,
        via: str = "header",
        transports=("websocket",),
        headers=None,
        ack: bool = False,
    ) -> "RecordingClient":
        """Connect to `url` with `token` in the `Authorization` header (`via="header"`) or the
        `auth` payload (`via="auth"`); `transports=None` lets python-socketio choose. With
        `ack=True` it is an acknowledging client (python-socketio acknowledges each event
        when its handler returns); otherwise a plain one.

        Returns once the connect's own events are in: the server sends `pending_notifications`
        (if any) and then `unread_count` right after the CONNECT packet, so a test that acts
        at once (leaves, reads what arrived) sees the state a connected client has."""
        headers = dict(headers or {})
        counts_before = self._unread_counts()
        auth = {"ack": True} if ack else None
        if token is not None and via == "header":
            headers = {**bearer(token), **headers}
        elif token is not None:
            auth = {**(auth or {}), "token": token}
        self.connect(
            url,
            headers=headers,
            auth=auth,
            transports=list(transports) if transports else None,
            wait_timeout=CONNECT_TIMEOUT,
        )
        wait_for(
            lambda: self._unread_counts() > counts_before,
            CONNECT_TIMEOUT,
            lambda: f"the unread_count that follows the connect of {self}",
        )
        return self

    def _unread_counts(self) -> int:
        with self._lock:
            return sum(1 for name, _ in self.events if name == UNREAD_COUNT)

    def close(self) -> None:
        """Disconnect, whatever state the connection is in (the server may be gone already)."""
        if self._silenced is not None:
            self.drop()  # a silent connection has no reader left to see a clean close through
        try:
            self.disconnect()
        except Exception:  # noqa: BLE001 - teardown must reach every client
            pass

    def drop(self) -> None:
        """End the connection as a broken network path does: without a Socket.IO or Engine.IO
        close, the TCP connection ends at once (websocket transport), and the server learns it
        from TCP alone."""
        sock = getattr(getattr(self.eio, "ws", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Before the close: a close alone does not end a socket this client's reader is
                # blocked on (the reader keeps it open, so nothing is sent); the shutdown sends
                # a FIN at once and wakes the reader.
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()  # with a zero linger time, a reset once the reader has let go
        if self._silenced is not None:
            self._silenced.set()

    def go_silent(self) -> None:
        """Stop reading and answering pings, as a client whose network vanished or whose machine
        froze: from now on nothing that arrives is handled (nor acknowledged), and the server
        learns it only from its ping timeout. `drop()` or `close()` ends it here."""
        silenced = self._silenced = threading.Event()

        def swallow(_packet) -> None:  # the read loop's handler of each packet from now on
            silenced.wait()

        self.eio._receive_packet = swallow

    # ---- what arrived ------------------------------------------------------

    def notifications(self) -> list[dict]:
        """Every notification received, pending ones first, then live ones, in arrival order."""
        with self._lock:
            return [n for batch in self.pending_batches for n in batch] + list(self.new_notifications)

    def notification_ids(self) -> list[str]:
        return [n["id"] for n in self.notifications()]

    def new_ids(self) -> set[str]:
        with self._lock:
            return {n["id"] for n in self.new_notifications}

    def pending_ids(self) -> set[str]:
        with self._lock:
            return {n["id"] for batch in self.pending_batches for n in batch}

    def got(self, notification_id: str) -> bool:
        return self.counts[notification_id] > 0

    def wait_received(self, notification_id: str, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait until the notification has arrived, live or pending."""
        wait_for(
            lambda: notification_id in self.notification_ids(),
            timeout,
            lambda: f"notification {notification_id} on {self}; got {self.notification_ids()}",
        )


def connect(
    client: RecordingClient,
    server,
    user_id: str | None = None,
    *,
    via: str = "header",
    token=None,
    ack: bool = False,
):
    """Connect `client` to `server` (anything with `.url` and `.token()`) over the websocket transport,
    with `token`, else a token of `user_id`, else none; in a header or in `auth` (`via`)."""
    if token is None and user_id is not None:
        token = server.token(user_id)
    return client.open(server.url, token, via=via, ack=ack)
