"""Durable confirmation: which notifications reached their user, written in batches.

A notification is confirmed (`received_at`) when an acknowledging socket of its user
acknowledged it, or when it was sent to a plain socket. Confirmations are gathered in
memory and written every FLUSH_SECONDS in one UPDATE, so an acknowledgement storm is
not a write storm. What is not confirmed DELIVERY_CONFIRM_TIMEOUT seconds after it was
sent goes back to PENDING (`delivery.sweep_unconfirmed`), whatever lost it: a socket
that closed mid-send, a process killed, a message-queue publish that never arrived.
"""

import logging
import threading
from collections.abc import Callable, Iterable

from flask import Flask

from app.services import rows

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1


class Confirmations:
    """This process's confirmations not yet written to the database."""

    def __init__(self, app: Flask, start_task: Callable, sleep: Callable) -> None:
        self._app = app
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
            with self._app.app_context():
                return rows.confirm(sorted(ids))
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
