"""What the delivery core asks of its collaborators (store, presence, transport); the values they pass."""

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from app.records import NotificationRecord


@dataclass(frozen=True)
class Holders:
    """The live processes (presence ids) holding a socket of one user, at one presence read."""

    processes: frozenset[str] = frozenset()  # any socket
    acknowledging: frozenset[str] = frozenset()  # an acknowledging client's socket


@dataclass(frozen=True)
class Reading:
    """One presence read of some users: who is online, with which kinds of socket, and where.

    `holders` has the users whose sockets could be located (with several processes); a user
    missing there is not routed: a send to them goes to every process.
    """

    online: frozenset[str] = frozenset()
    plain: frozenset[str] = frozenset()  # online with a plain client's socket
    acknowledging: frozenset[str] = frozenset()  # online with an acknowledging client's socket
    holders: Mapping[str, Holders] = field(default_factory=dict)

    def processes(self) -> dict[str, frozenset[str]]:
        """Per located user: the processes a send to them goes to."""
        return {user_id: found.processes for user_id, found in self.holders.items()}


@dataclass
class DeadProcess:
    """A process that stopped proving it is alive, and the users it held sockets of."""

    process_id: str
    last_beat: float
    user_ids: set[str] = field(default_factory=set)


@dataclass
class Tick:
    """What one heartbeat found: users to re-send pending rows to, processes to reap."""

    resynced_users: set[str] = field(default_factory=set)
    dead: list[DeadProcess] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    """Where one send goes: a value handed to the transport, never state left on it.

    `processes`: per user, the processes holding a socket of theirs (from a presence read);
    a user missing goes to every process. `acknowledging_only`: to acknowledging sockets
    only, and to this process's own only when `processes` names it (a re-send to processes a
    user moved to, which a plain client that had the first send must not get again).
    """

    processes: Mapping[str, Collection[str]] = field(default_factory=dict)
    acknowledging_only: bool = False


class Presence(Protocol):
    """Who is online right now, counting every socket of a user (app/services/presence/)."""

    shared: bool  # several processes see the same state

    def add(self, user_id: str, sid: str, plain: bool = False) -> None:
        """Count socket `sid` of `user_id` as connected (`plain`: a plain client's socket)."""

    def remove(self, sid: str) -> str | None:
        """Forget socket `sid`; return its user, or None if it was not counted."""

    def read(self, user_ids: Iterable[str]) -> Reading:
        """Which of `user_ids` are online, with which kinds of socket, held by which processes."""

    def socket_count(self, user_id: str) -> int:
        """How many sockets `user_id` has open."""

    def heartbeat(self) -> Tick:
        """Prove this process alive; what it found (see `Tick`)."""

    def finish_reaping(self, dead: DeadProcess) -> None:
        """Forget a dead process once its users' notifications were put back."""

    @property
    def in_sync(self) -> bool:
        """Whether every socket of this process is registered where the others look."""

    def close(self) -> None:
        """Forget every socket of this process (shutdown)."""


class Store(Protocol):
    """The notifications table, each call one atomic change (app/services/store.py)."""

    def insert(
        self, records: list[NotificationRecord], before_commit: Callable[[], None] | None
    ) -> list[NotificationRecord]:
        """Write `records` in one transaction, with `before_commit` inside it, but not those whose
        user muted their category (tested in the same statement); the records written. Nothing
        on failure."""

    def claim(
        self, ids: Collection[str] = (), users: Collection[str] = (), received: bool = False
    ) -> list[NotificationRecord]:
        """Mark DELIVERED the PENDING rows among `ids` or of `users`; exactly the rows changed.
        `received`: they go to a plain client, so they count as received as they are sent."""

    def requeue(
        self, ids: Collection[str], keep_confirmed: bool = True, always: Collection[str] = ()
    ) -> set[str]:
        """Put back to PENDING (not delivered, not received) the DELIVERED rows among `ids`; their ids.
        `keep_confirmed`: rows with `received_at` stay, unless among `always`."""

    def requeue_unconfirmed(self, sent_before: datetime) -> set[str]:
        """Put back to PENDING what was sent before `sent_before` and never confirmed; their users."""

    def connect_state(self, user_id: str) -> tuple[bool, int]:
        """(whether the user has PENDING rows, how many of their rows are unread)."""

    def unread_counts(self, user_ids: Iterable[str]) -> dict[str, int]:
        """How many rows of each user are not READ."""

    def subscribers(self, topic: str, after: str | None, limit: int, joined_by: datetime) -> list[str]:
        """Up to `limit` users of `topic` in id order after `after`, who joined it by `joined_by`."""

    def commit_only(self, before_commit: Callable[[], None]) -> None:
        """Run `before_commit` in a transaction of its own that stores nothing else."""


class Transport(Protocol):
    """The sockets (app/realtime/transport.py): sends go out as values, with a `Route`."""

    routed: bool  # other processes are reached through a message queue that honours routes

    def send(self, event: str, items: Sequence[tuple[str, object]], route: Route) -> None:
        """Send each (user id, payload) to that user's sockets, as `route` says; one publish for all."""

    def send_to_socket(self, sid: str, event: str, payload: object) -> None:
        """Send `payload` to socket `sid` of this process."""

    def join(self, sid: str, user_id: str) -> None:
        """Socket `sid` now gets what is sent to `user_id`."""

    def leave(self, sid: str, user_id: str) -> None:
        """Socket `sid` no longer gets what is sent to `user_id`."""

    def pause(self) -> None:
        """Let the sockets' writers run before going on."""
