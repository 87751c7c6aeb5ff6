"""Which notifications reached their user: this process's sockets, what each was sent, and the confirmations.

A notification is confirmed (`received_at`) when an acknowledging socket of its user
acknowledged it, or when it was sent to a plain socket. Confirmations are gathered in
memory and written every FLUSH_SECONDS in one UPDATE, so an acknowledgement storm is not
a write storm. What is not confirmed in time goes back to PENDING (sweeper.py).
"""

import logging
import threading
from collections.abc import Callable, Iterable

from app import metrics
from app.protocol import PENDING_NOTIFICATIONS

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1


class Confirmations:
    """This process's confirmations not yet written; `write(ids)` stores them (how many it changed)."""

    def __init__(self, write: Callable[[list[str]], int], start_task: Callable, sleep: Callable) -> None:
        self._write = write
        self._start_task = start_task
        self._sleep = sleep
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._running = False
        self._stopped = False

    def add(self, notification_ids: Iterable[str]) -> None:
        """Confirm these notifications (written with the next flush)."""
        with self._lock:
            self._ids.update(notification_ids)
            start = not self._running
            self._running = True
        if start and not self._stopped:
            self._start_task(self._loop)

    def flush(self) -> int:
        """Write what was gathered; how many rows it confirmed. Kept for the next try on failure."""
        with self._lock:
            ids, self._ids = self._ids, set()
        if not ids:
            return 0
        try:
            return self._write(sorted(ids))
        except Exception:
            with self._lock:
                self._ids |= ids
            raise

    def stop(self) -> None:
        """No more background writes (the app is going away); flush() still works."""
        self._stopped = True

    def _loop(self) -> None:
        while True:
            self._sleep(FLUSH_SECONDS)
            with self._lock:
                if not self._ids or self._stopped:  # idle: the next add() starts the loop again
                    self._running = False
                    return
            try:
                self.flush()
            except Exception:  # noqa: BLE001  (the database is down: retried next time)
                log.exception("could not write delivery confirmations; retrying")


def notification_ids(event: str, payload) -> list[str]:
    """The ids of the notifications in a `new_notification` or `pending_notifications` payload."""
    if event == PENDING_NOTIFICATIONS:
        return [n["id"] for n in payload]
    return [payload["id"]]


class Tracker:
    """Per socket of this process: its kind, and what it was sent and has not acknowledged.

    Acknowledging clients (`auth: {"ack": true}`) get every notification event with an
    acknowledgement request; what they were sent and did not acknowledge is put back when
    the socket closes. A send to a plain client confirms the notification at once (at most once).
    """

    def __init__(self, confirm: Callable[[Iterable[str]], None]) -> None:
        self._confirm = confirm
        self._acknowledging: dict[str, bool] = {}
        self._unacknowledged: dict[str, set[str]] = {}

    def register(self, sid: str, acknowledging: bool) -> None:
        """A socket is connecting: from now on it is sent notifications, as its kind asks."""
        self._acknowledging[sid] = acknowledging

    def acknowledging(self, sid: str) -> bool | None:
        """The socket's kind; None for a socket that is not (or no longer) registered."""
        return self._acknowledging.get(sid)

    def sent(self, sid: str, notification_ids: Iterable[str]) -> None:
        """`sid` (acknowledging) was sent these notifications with an acknowledgement request."""
        self._unacknowledged.setdefault(sid, set()).update(notification_ids)

    def confirmed(self, sid: str, notification_ids: list[str], *_ack_args) -> None:
        """The client of `sid` acknowledged these notifications."""
        pending = self._unacknowledged.get(sid)
        if pending is not None:
            pending.difference_update(notification_ids)
        self._confirm(notification_ids)

    def acknowledged(self, sid: str, event: str, payload, *ack_args) -> None:
        """The client of `sid` acknowledged the `event` it was sent with `payload`: confirmed, and counted."""
        self.confirmed(sid, notification_ids(event, payload), *ack_args)
        if event == PENDING_NOTIFICATIONS:
            metrics.acknowledged([n["createdAt"] for n in payload], live=False)
        else:
            metrics.acknowledged([payload["createdAt"]], live=True)

    def sent_plain(self, notification_ids: Iterable[str]) -> None:
        """These notifications went to a plain socket: received, as far as it will ever tell."""
        self._confirm(notification_ids)

    def forget(self, sid: str) -> list[str]:
        """The socket closed: stop sending to it; what it never acknowledged."""
        self._acknowledging.pop(sid, None)
        return list(self._unacknowledged.pop(sid, ()))
