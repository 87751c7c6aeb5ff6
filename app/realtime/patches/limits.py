"""Correction to limits (5.8.0): the in-memory counters are swept for expired ones once a second.

`MemoryStorage` (the rate limits of a single process) starts a timer 10 ms after every hit
that walks every key it holds to drop the expired ones. Under steady traffic that walks
every counter (two per limit per user or address, each kept for two windows) a hundred times
a second, so its cost grows with the number of users, not with the traffic. Reads check a
counter's expiry themselves (`get`), so the sweep only frees memory: once a second is as
correct. Upstream fix: keep the keys in expiry order (a heap) so that a sweep touches only
the expired ones.
"""

import threading

from limits.storage.memory import MemoryStorage

PACKAGE = "limits"
WRITTEN_FOR = "5.8.0"

SWEEP_EVERY_SECOND = "limits: in-memory counters swept once a second (not 10 ms after every hit)"
SWEEP_SECONDS = 1.0


def apply() -> None:
    """Make every `MemoryStorage` sweep expired counters at most once per SWEEP_SECONDS."""
    if _corrected():
        return

    def schedule_expiry(self: MemoryStorage) -> None:
        if not self.timer.is_alive():
            self.timer = threading.Timer(SWEEP_SECONDS, self._MemoryStorage__expire_events)
            self.timer.daemon = True
            self.timer.start()

    schedule_expiry.corrected = True
    MemoryStorage._MemoryStorage__schedule_expiry = schedule_expiry


def in_effect() -> list[str]:
    """The names of this module's corrections in effect in this process."""
    return [SWEEP_EVERY_SECOND] if _corrected() else []


def _corrected() -> bool:
    return getattr(MemoryStorage._MemoryStorage__schedule_expiry, "corrected", False)
