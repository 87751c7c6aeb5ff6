"""Small statistics helpers: percentiles and the accounting of received notifications."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) of `values`, linear between ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Iterable[float]) -> dict:
    """Count, p50, p90, p99 and max of durations given in seconds, in milliseconds."""
    values = [s * 1000.0 for s in seconds]
    if not values:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "count": len(values),
        "p50_ms": round(percentile(values, 50), 2),
        "p90_ms": round(percentile(values, 90), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(max(values), 2),
    }


@dataclass
class Delivery:
    """What reached the clients, compared with what the server said it created.

    `expected` maps notification id -> user id (from the POST responses); receipts are
    (user id, notification id, receive time) tuples from every client. Each id is
    counted once: the first receipt by its own user gives its receive time, any later
    receipt of the same id by that user is a duplicate, a receipt of an id that is not
    expected (or by another user) is `unexpected`.
    """

    expected: dict[str, str]
    first_seen: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    unexpected: int = 0
    wrong_user: int = 0

    def add(self, receipts: Iterable[tuple[str, str, float]]) -> None:
        """Account for a batch of receipts (each receipt must be given only once)."""
        for user_id, notification_id, received_at in receipts:
            owner = self.expected.get(notification_id)
            if owner is None:
                self.unexpected += 1
            elif owner != user_id:
                self.wrong_user += 1
            elif notification_id in self.first_seen:
                self.duplicates += 1
                self.first_seen[notification_id] = min(self.first_seen[notification_id], received_at)
            else:
                self.first_seen[notification_id] = received_at

    @property
    def received(self) -> int:
        """Distinct expected notifications that reached their user."""
        return len(self.first_seen)

    def missing_ids(self) -> list[str]:
        """The expected notification ids that never reached their user."""
        return [nid for nid in self.expected if nid not in self.first_seen]

    @property
    def missing(self) -> int:
        """Expected notifications that never reached their user."""
        return len(self.expected) - len(self.first_seen)
