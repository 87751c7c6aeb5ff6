"""Per-connection deadlines, kept for every connection of the process by one background task.

Two deadlines use it: an Engine.IO session must send the Socket.IO connect within
SOCKETIO_CONNECT_TIMEOUT seconds (as Node's Socket.IO server requires), and a
socket is closed once its token's `exp` has passed, unless the client sent a fresh
token first (the contract's `token_expired` / `refresh_token`).

Cheap at tens of thousands of sockets: a deadline is one dict entry and one heap
entry (O(log n) to set); the task wakes every TICK_SECONDS and pops only what is
due. No timer per socket, no scan of every socket.
"""

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable

import socketio

from app.auth import AuthError, Identity, identity_from_token
from app.protocol import NAMESPACE, TOKEN_EXPIRED

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
# Rebuild the heap when stale entries (moved or cancelled deadlines) outnumber live ones.
COMPACT_FACTOR = 2
COMPACT_MINIMUM = 1024


class Deadlines:
    """Actions to run at given times, each under a key; setting a key again moves its deadline."""

    def __init__(self, start_task: Callable, sleep: Callable, clock: Callable[[], float] = time.time):
        self._start_task = start_task
        self._sleep = sleep
        self.clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._running = False

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: Hashable, when: float, action: Callable[[], None]) -> None:
        """Run `action` at `when` (a `clock()` time), replacing the key's earlier deadline."""
        with self._lock:
            self._due[key] = (when, action)
            heapq.heappush(self._heap, (when, next(self._order), key))
            if len(self._heap) > COMPACT_MINIMUM and len(self._heap) > COMPACT_FACTOR * len(self._due):
                self._heap = [(when, next(self._order), k) for k, (when, _action) in self._due.items()]
                heapq.heapify(self._heap)
            start = not self._running
            self._running = True
        if start:
            self._start_task(self._loop)

    def cancel(self, key: Hashable) -> None:
        """Forget the key's deadline (its heap entry is skipped when it comes up)."""
        with self._lock:
            self._due.pop(key, None)

    def when(self, key: Hashable) -> float | None:
        """The key's deadline, if it has one."""
        entry = self._due.get(key)
        return entry[0] if entry else None

    def run_due(self) -> int:
        """Run every action whose time has come; how many ran."""
        now = self.clock()
        actions = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                when, _order, key = heapq.heappop(self._heap)
                entry = self._due.get(key)
                if entry is not None and entry[0] == when:
                    del self._due[key]
                    actions.append((key, entry[1]))
        for key, action in actions:
            try:
                action()
            except Exception:  # noqa: BLE001  (one failing action must not stop the others)
                log.exception("deadline action for %s failed", key)
        return len(actions)

    def _loop(self) -> None:
        while True:
            self._sleep(TICK_SECONDS)
            self.run_due()
            with self._lock:
                if not self._due:  # nothing left: the next set() starts the loop again
                    self._running = False
                    return


class ConnectDeadline:
    """Closes an Engine.IO session that has not connected to a Socket.IO namespace in time."""

    def __init__(self, server: socketio.Server, deadlines: Deadlines, timeout: float):
        self.server = server
        self.deadlines = deadlines
        self.timeout = timeout

    def install(self) -> None:
        """Start the clock of every new Engine.IO session (python-socketio has no such option)."""
        eio = self.server.eio
        opened = eio.handlers["connect"]

        def on_engineio_connect(eio_sid, environ):
            accepted = opened(eio_sid, environ)
            if accepted is not False:
                self.start(eio_sid)
            return accepted

        eio.on("connect", on_engineio_connect)

    def start(self, eio_sid: str) -> None:
        """(Re)start the session's clock: at connect, and after the client left the namespace."""
        when = self.deadlines.clock() + self.timeout
        self.deadlines.set(("connect", eio_sid), when, lambda: self._check(eio_sid))

    def _check(self, eio_sid: str) -> None:
        if eio_sid not in self.server.eio.sockets:
            return
        manager = self.server.manager
        # The notifications namespace, or another this server accepts (the Admin UI's /admin).
        if any(manager.sid_from_eio_sid(eio_sid, space) is not None for space in manager.get_namespaces()):
            return
        log.info("Engine.IO session %s sent no Socket.IO connect within %ss: closed", eio_sid, self.timeout)
        self.server.eio.disconnect(eio_sid)


class RefreshRefused(Exception):
    """A `refresh_token` that changes nothing; `code` goes back to the client."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class TokenExpiry:
    """Closes each socket when its token expires; `refresh_token` moves the deadline."""

    def __init__(self, server: socketio.Server, deadlines: Deadlines):
        self.server = server
        self.deadlines = deadlines
        self._users: dict[str, str] = {}

    def track(self, sid: str, identity: Identity) -> None:
        """Start watching a connected socket's token."""
        self._users[sid] = identity.user_id
        self._watch(sid, identity)

    def forget(self, sid: str) -> None:
        """The socket closed."""
        self._users.pop(sid, None)
        self.deadlines.cancel(("token", sid))

    def expires_at(self, sid: str) -> float | None:
        """When the socket will be closed for its token, if it is watched."""
        return self.deadlines.when(("token", sid))

    def refresh(self, sid: str, token: object) -> float:
        """Take a fresh token for the socket's user; its `exp`. RefreshRefused changes nothing."""
        user_id = self._users.get(sid)
        if user_id is None:
            raise RefreshRefused("not_connected", "the socket is not connected")
        if not isinstance(token, str) or not token:
            raise RefreshRefused("bad_request", 'send "<token>" or {"token": "<token>"}')
        try:
            identity = identity_from_token(token)
        except AuthError as exc:
            raise RefreshRefused("invalid_token", str(exc)) from None
        if identity.user_id != user_id:
            raise RefreshRefused("wrong_user", "the token is for another user")
        self._watch(sid, identity)
        return identity.expires_at

    def _watch(self, sid: str, identity: Identity) -> None:
        self.deadlines.set(("token", sid), identity.expires_at, lambda: self._expire(sid))

    def _expire(self, sid: str) -> None:
        if self._users.get(sid) is None:
            return
        log.info("token of socket %s (user %s) expired: closing it", sid, self._users[sid])
        # Straight to the local socket, ahead of the close (not through the message queue).
        self.server.emit(TOKEN_EXPIRED, {}, to=sid, namespace=NAMESPACE, ignore_queue=True)
        self.server.disconnect(sid, namespace=NAMESPACE)
