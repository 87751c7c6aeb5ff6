"""Sizes and timings of a chaos run, the quick preset, and the run's clock."""

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Settings:
    """Sizes and timings of a run; the defaults are the full run's (several minutes)."""

    users: int = field(default=100, metadata={"help": "users, every other one an acknowledging client"})
    rate: float = field(default=20.0, metadata={"help": "POSTs per second, each to 1-3 random users"})
    duration: float = field(default=240.0, metadata={"help": "seconds of flapping and posting"})
    min_stay: float = field(default=1.0, metadata={"help": "shortest connection, seconds"})
    max_stay: float = field(default=8.0, metadata={"help": "longest connection, seconds"})
    min_pause: float = field(default=0.2, metadata={"help": "shortest time offline between two, seconds"})
    max_pause: float = field(default=2.0, metadata={"help": "longest time offline between two, seconds"})
    silent: float = field(
        default=0.03,
        metadata={"help": "share of departures that go silent (the server keeps each to its ping timeout)"},
    )
    linger: float = field(
        default=0.0,
        metadata={
            "help": "share of departures that move to the other process while the old connection stays "
            "silent for a while, then dies (a phone switching from Wi-Fi to mobile data)"
        },
    )
    min_linger: float = field(
        default=2.0, metadata={"help": "shortest silence of a lingering connection, seconds"}
    )
    max_linger: float = field(
        default=15.0, metadata={"help": "longest silence of a lingering connection, seconds"}
    )
    max_duplicates: float = field(
        default=1.0,
        metadata={"help": "largest share of acknowledging clients' notifications received twice that passes"},
    )
    presence_ttl: int = field(default=3, metadata={"help": "the servers' PRESENCE_TTL, seconds"})
    confirm_timeout: int = field(
        default=5, metadata={"help": "the servers' DELIVERY_CONFIRM_TIMEOUT, seconds"}
    )
    down: float = field(
        default=3.0, metadata={"help": "seconds a killed or stopped process, or Redis, is down"}
    )
    seed: int = field(default=1, metadata={"help": "random seed (users' ways, targets, which process)"})

    @property
    def settle_timeout(self) -> float:
        """How long the final connections may wait for everything to be received."""
        return self.confirm_timeout * 3 + 30

    def describe(self) -> str:
        return (
            f"seed {self.seed}; {self.users} users (every other one acknowledging); {self.rate:g} POST/s to "
            f"1-3 users each for {self.duration:g} s; stays {self.min_stay:g}-{self.max_stay:g} s, pauses "
            f"{self.min_pause:g}-{self.max_pause:g} s, {self.silent:.0%} of departures silent, "
            f"{self.linger:.0%} moves lingering {self.min_linger:g}-{self.max_linger:g} s; PRESENCE_TTL "
            f"{self.presence_ttl} s, DELIVERY_CONFIRM_TIMEOUT {self.confirm_timeout} s"
        )


FULL = Settings()
QUICK = Settings(users=20, rate=10.0, duration=30.0)


def clock_text(wall: float) -> str:
    """A wall-clock time as the servers' log lines show it (local time, to the millisecond)."""
    return datetime.fromtimestamp(wall).strftime("%H:%M:%S.%f")[:-3]


class Journal:
    """Seconds since the start of the run, and what happened when (printed as it goes)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.started

    def stamp(self) -> str:
        return f"{self.now():7.1f}s  {clock_text(time.time())}"

    def note(self, text: str) -> str:
        """Print `text` with the time; the line printed."""
        line = f"{self.stamp()}  {text}"
        with self._lock:
            print(line, flush=True)
        return line
