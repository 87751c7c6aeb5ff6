"""Who is online right now, counting every socket of a user.

`Presence` is the interface; `LocalPresence` (local.py) keeps it in this process's memory,
the embedded single-process default; `RedisPresence` (redis.py) shares it between
processes through Redis, where each socket is recorded under the id of the process that
holds it, and each process proves it is alive by refreshing a key with a time to live. A
process that stops refreshing (killed, or cut off from the Redis message queue) stops
counting once the key expires, and a surviving process "reaps" it (see
`notifications.presence_tick`, run by the heartbeat of app/realtime/server.py).

`RedisPresence` also remembers, per green thread, which live processes held each user's
sockets at its last `online_kinds` (`last_holders`, a `Holders` per user it could read):
the sender of a notification routes its emits with them (app/realtime/queue.py) without
asking Redis again. A user missing there (Redis unreachable, or `LocalPresence`) is not
routed: the emit goes to every process, as without routing.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from flask import Flask, current_app


@dataclass
class DeadProcess:
    """A process that stopped proving it is alive, and the users it held sockets of."""

    process_id: str
    last_beat: float
    user_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Holders:
    """The live processes (presence ids) holding a socket of one user, at one presence read."""

    sockets: frozenset[str] = frozenset()  # any socket
    acknowledging: frozenset[str] = frozenset()  # an acknowledging client's socket


@dataclass
class Tick:
    """What one heartbeat found: users to re-send pending rows to, processes to reap."""

    resynced_users: set[str] = field(default_factory=set)
    dead: list[DeadProcess] = field(default_factory=list)


class Presence(Protocol):
    """What the delivery service asks of presence, whichever implementation holds it."""

    shared: bool  # several processes see the same state

    def add(self, user_id: str, sid: str, plain: bool = False) -> None:
        """Count socket `sid` of `user_id` as connected (`plain`: a plain client's socket)."""

    def remove(self, sid: str) -> str | None:
        """Forget socket `sid`; return its user, or None if it was not counted."""

    def online(self, user_ids: Iterable[str]) -> set[str]:
        """The subset of `user_ids` with at least one connected socket."""

    def online_kinds(self, user_ids: Iterable[str]) -> tuple[set[str], set[str], set[str]]:
        """(users online, those of them with a plain client's socket, those with an acknowledging one)."""

    def last_holders(self) -> dict[str, "Holders"]:
        """Per user of this green thread's last `online`/`online_kinds`: the processes holding their
        sockets; a user missing is not routed (the emit goes to every process)."""

    def socket_count(self, user_id: str) -> int:
        """How many sockets `user_id` has open."""

    @property
    def in_sync(self) -> bool:
        """Whether every socket of this process is registered where the others look."""

    def heartbeat(self) -> Tick:
        """Prove this process alive; what it found (see `Tick`)."""

    def finish_reaping(self, dead: DeadProcess) -> None:
        """Forget a dead process once its users' notifications were put back."""

    def close(self) -> None:
        """Forget every socket of this process (shutdown)."""


def init_presence(app: Flask, listening=None) -> None:
    """Give `app` its presence registry: in Redis when a message queue is configured.

    `listening`: whether the message-queue listener is subscribed right now. With the
    queue's manager (app/realtime/queue.py), whose subscriptions also decide under which
    id this process may count as alive, each id gets a channel of its own.
    """
    from app.extensions import socketio
    from app.services.presence.local import LocalPresence
    from app.services.presence.redis import RedisPresence

    url = app.config.get("PRESENCE_REDIS_URL") or app.config["SOCKETIO_MESSAGE_QUEUE"]
    presence: Presence
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        manager = getattr(getattr(socketio, "server", None), "manager", None)
        # Registered in Redis by the server's first heartbeat (app/realtime/server.py).
        presence = RedisPresence(
            url,
            ttl=app.config["PRESENCE_TTL"],
            prefix=app.config["PRESENCE_KEY_PREFIX"],
            listening=listening,
            channels=manager if listening is not None and hasattr(manager, "follow") else None,
        )
    else:
        presence = LocalPresence()
    app.extensions["presence"] = presence


def get_presence() -> Presence:
    """The presence registry of the current app."""
    return current_app.extensions["presence"]
