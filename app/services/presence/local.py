"""Presence in this process's memory: the embedded, single-process default."""

from collections.abc import Iterable

from app.delivery.ports import DeadProcess, Reading, Tick


class LocalPresence:
    """Presence kept in this process's memory.

    Under eventlet every handler runs in one OS thread and these methods never
    yield, so each call is atomic with respect to the others.
    """

    shared = False

    def __init__(self) -> None:
        self._sockets: dict[str, set[str]] = {}
        self._owner: dict[str, str] = {}
        self._plain: set[str] = set()  # sids of plain (non-acknowledging) sockets

    def add(self, user_id: str, sid: str, plain: bool = False) -> None:
        """Count socket `sid` of `user_id` as connected (`plain`: a plain client's)."""
        self._sockets.setdefault(user_id, set()).add(sid)
        self._owner[sid] = user_id
        if plain:
            self._plain.add(sid)

    def is_plain(self, sid: str) -> bool:
        """Whether socket `sid` is a plain client's."""
        return sid in self._plain

    def remove(self, sid: str) -> str | None:
        """Forget socket `sid`; return its user, or None if it was not counted."""
        user_id = self._owner.pop(sid, None)
        self._plain.discard(sid)
        if user_id is None:
            return None
        sids = self._sockets.get(user_id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._sockets[user_id]
        return user_id

    def online(self, user_ids: Iterable[str]) -> set[str]:
        """The subset of `user_ids` with at least one connected socket."""
        return {user_id for user_id in user_ids if user_id in self._sockets}

    def read(self, user_ids: Iterable[str]) -> Reading:
        """Who of `user_ids` is online, with which kinds of socket (nothing to locate in one process)."""
        online = self.online(user_ids)
        kinds = {u: {sid in self._plain for sid in self._sockets.get(u, ())} for u in online}
        return Reading(
            online=frozenset(online),
            plain=frozenset(u for u in online if True in kinds[u]),
            acknowledging=frozenset(u for u in online if False in kinds[u]),
        )

    def local_users(self) -> set[str]:
        """Users with a socket in this process."""
        return set(self._sockets)

    def socket_count(self, user_id: str) -> int:
        """How many sockets `user_id` has open."""
        return len(self._sockets.get(user_id, ()))

    in_sync = True

    def heartbeat(self) -> Tick:
        """Nothing to prove or reap in a single process."""
        return Tick()

    def finish_reaping(self, dead: DeadProcess) -> None:
        """Nothing to reap in a single process."""

    def close(self) -> None:
        """Forget every socket (shutdown)."""
        self._sockets.clear()
        self._owner.clear()
        self._plain.clear()

    def sockets(self) -> list[tuple[str, str]]:
        """Every counted socket of this process, as (sid, user id)."""
        return list(self._owner.items())

    def holds(self, sid: str) -> bool:
        """Whether socket `sid` is counted."""
        return sid in self._owner
