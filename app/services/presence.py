"""Who is online right now, counting every socket of a user."""

import logging
from collections.abc import Iterable

from flask import Flask, current_app

log = logging.getLogger(__name__)


class LocalPresence:
    """Presence kept in this process's memory: the embedded, single-process default.

    Under eventlet every handler runs in one OS thread and these methods never
    yield, so each call is atomic with respect to the others.
    """

    def __init__(self) -> None:
        self._sockets: dict[str, set[str]] = {}
        self._owner: dict[str, str] = {}

    def add(self, user_id: str, sid: str) -> None:
        """Count socket `sid` of `user_id` as connected."""
        self._sockets.setdefault(user_id, set()).add(sid)
        self._owner[sid] = user_id

    def remove(self, sid: str) -> str | None:
        """Forget socket `sid`; return its user, or None if it was not counted."""
        user_id = self._owner.pop(sid, None)
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

    def socket_count(self, user_id: str) -> int:
        """How many sockets `user_id` has open."""
        return len(self._sockets.get(user_id, ()))


def init_presence(app: Flask) -> None:
    """Give `app` its presence registry."""
    app.extensions["presence"] = LocalPresence()


def get_presence() -> LocalPresence:
    """The presence registry of the current app."""
    return current_app.extensions["presence"]
