"""What the scenarios share: sizes, context, deadline, connecting users, posting, receipts.

Each scenario fills a `figures` dict as it goes, so that a scenario stopped by its
deadline or by an error still reports what it measured. Every wait is bounded by the
scenario's deadline. Receipts are accounted by notification id (`stats.Delivery`):
each id counts once, later copies are duplicates.

Times: the client's receive time minus the time the POST was sent, both from
`time.time()` on this machine (the load processes share its clock).
"""

import time
from collections import Counter
from dataclasses import dataclass, field

from bench.pool import LoadPool
from bench.servers import Servers
from bench.stats import Delivery, summary_ms
from bench.tokens import make_token

POLL_SECONDS = 0.05
CONNECT_TIMEOUT = 30.0
SETTLE_SECONDS = 10.0
MB = 1024 * 1024
# Missing or lost notifications listed one by one in the figures, at most.
MAX_DETAILS = 20


@dataclass
class Sizes:
    """Every size and duration of the scenarios (see `FULL` and `QUICK`)."""

    s1_clients: int
    s1_concurrency: int
    s2_connections: int
    s2_concurrency: int
    s2_hold: float
    s2_notify: int
    s3_users: int
    s3_concurrency: int
    s4_users: int
    s5_pending: int
    s5_concurrency: int
    s6_users: int
    s6_rate: float
    s6_duration: float
    delivery_wait: float


FULL = Sizes(
    s1_clients=1000,
    s1_concurrency=100,
    s2_connections=10_000,
    s2_concurrency=200,
    s2_hold=30.0,
    s2_notify=100,
    s3_users=1000,
    s3_concurrency=100,
    s4_users=10_000,
    s5_pending=1000,
    s5_concurrency=20,
    s6_users=500,
    s6_rate=100.0,
    s6_duration=20.0,
    delivery_wait=30.0,
)

QUICK = Sizes(
    s1_clients=20,
    s1_concurrency=10,
    s2_connections=40,
    s2_concurrency=20,
    s2_hold=1.0,
    s2_notify=10,
    s3_users=20,
    s3_concurrency=10,
    s4_users=50,
    s5_pending=20,
    s5_concurrency=5,
    s6_users=10,
    s6_rate=20.0,
    s6_duration=1.0,
    delivery_wait=10.0,
)


class Deadline:
    """The time a scenario has left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        """Seconds left (at least a little, so a last bounded call can report), capped."""
        left = max(0.5, self.end - time.monotonic())
        return min(left, cap) if cap is not None else left

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end


@dataclass
class Context:
    """What a scenario works with."""

    servers: Servers
    pool: LoadPool
    sizes: Sizes
    seed: int
    deadline: Deadline = field(default_factory=lambda: Deadline(60))

    @property
    def admin_token(self) -> str:
        return make_token(self.servers.secret, "bench-admin", admin=True)

    @property
    def urls(self) -> list[str]:
        return self.servers.urls


class ScenarioFailed(RuntimeError):
    """The scenario could not go on (its figures so far are still reported)."""


# -- building blocks ----------------------------------------------------------------------------


@dataclass
class Connected:
    """The outcome of connecting a batch of users."""

    users: list[str]
    failed: dict[str, str]
    times: list[float]
    start: float | None
    end: float | None

    @property
    def ok(self) -> list[str]:
        return [u for u in self.users if u not in self.failed]

    @property
    def wall(self) -> float:
        return (self.end - self.start) if self.start is not None and self.end is not None else 0.0

    def figures(self) -> dict:
        reasons = Counter(self.failed.values())
        ok = len(self.users) - len(self.failed)
        return {
            "connected": ok,
            "connect_failures": len(self.failed),
            "failure_reasons": dict(reasons.most_common(5)),
            "connect_wall_s": round(self.wall, 3),
            "connects_per_s": round(ok / self.wall, 1) if self.wall > 0 else None,
            "connect_ms": summary_ms(self.times),
        }


def connect_users(ctx: Context, users: list[str], concurrency: int) -> Connected:
    """Connect `users`, user i through client process i % W to server i % P.

    At most `concurrency` connections are in progress at once over all processes.
    """
    workers = ctx.pool.clients
    shares: list[list] = [[] for _ in workers]
    for index, user_id in enumerate(users):
        shares[index % len(workers)].append([user_id, ctx.urls[index % len(ctx.urls)]])
    base, extra = divmod(concurrency, len(workers))
    budget = ctx.deadline.left(max(60.0, len(users) / 20.0))
    calls = [
        (
            worker,
            "connect",
            {
                "users": share,
                "secret": ctx.servers.secret,
                "concurrency": max(1, base + (1 if k < extra else 0)),
                "timeout": CONNECT_TIMEOUT,
                "deadline": budget,
            },
        )
        for k, (worker, share) in enumerate(zip(workers, shares, strict=True))
        if share
    ]
    results = ctx.pool.call_each(calls, budget + 30)
    failed: dict[str, str] = {}
    times: list[float] = []
    starts, ends = [], []
    for result in results:
        failed.update(result["failed"])
        times.extend(result["times"])
        if result["start"] is not None:
            starts.append(result["start"])
        if result["end"] is not None:
            ends.append(result["end"])
    return Connected(users, failed, times, min(starts, default=None), max(ends, default=None))


def receipt_count(ctx: Context) -> int:
    """Notifications received so far by all clients (each copy counted)."""
    return sum(ctx.pool.call_all("count", 30, workers=ctx.pool.clients))


def wait_for_receipts(ctx: Context, expected: int, timeout: float) -> bool:
    """Wait until the clients have at least `expected` receipts; False on timeout."""
    end = time.monotonic() + ctx.deadline.left(timeout)
    while True:
        if receipt_count(ctx) >= expected:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(POLL_SECONDS)


def collect(ctx: Context) -> tuple[list[tuple], int]:
    """Every receipt of every client process, and the number of pending batches."""
    receipts: list[tuple] = []
    batches = 0
    for result in ctx.pool.call_all("receipts", 60, workers=ctx.pool.clients):
        receipts.extend(tuple(r) for r in result["receipts"])
        batches += result["pending_batches"]
    return receipts, batches


def post(ctx: Context, url: str, user_ids: list[str], message: str, timeout: float) -> dict:
    """One admin POST through the poster process."""
    timeout = ctx.deadline.left(timeout)
    return ctx.pool.call(
        ctx.pool.poster,
        "post",
        timeout + 15,
        url=url,
        token=ctx.admin_token,
        user_ids=user_ids,
        message=message,
        timeout=timeout,
    )


def dropped(ctx: Context) -> int:
    """Connections closed by the other side (or the network) so far, over all clients."""
    return sum(len(s["drops"]) for s in ctx.pool.call_all("status", 30, workers=ctx.pool.clients))


def check_servers(ctx: Context) -> None:
    """Raise if a server process has exited."""
    dead = ctx.servers.dead()
    if dead:
        raise ScenarioFailed("; ".join(dead))


def sleep_watching(ctx: Context, seconds: float) -> None:
    """Sleep `seconds` (bounded by the deadline), checking every second that the servers live."""
    end = time.monotonic() + min(seconds, max(0.0, ctx.deadline.end - time.monotonic()))
    while time.monotonic() < end:
        check_servers(ctx)
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


def missing_details(delivery: Delivery) -> list[dict]:
    """The first few notifications that never arrived: id and user."""
    return [{"id": nid, "user": delivery.expected[nid]} for nid in delivery.missing_ids()[:MAX_DETAILS]]


def ms(seconds: float | None) -> float | None:
    return round(seconds * 1000.0, 2) if seconds is not None else None


def receive_latencies(delivery: Delivery, sent: dict[str, float]) -> list[float]:
    """Seconds from each POST's send time to the first receipt of its notification."""
    return [at - sent[nid] for nid, at in delivery.first_seen.items() if nid in sent]


def connect_budget(n: int) -> float:
    """Seconds a scenario allows for connecting `n` users (as `connect_users` bounds them)."""
    return max(60.0, n / 20.0) + 30.0


# -- before the scenarios -----------------------------------------------------------------------


def wait_cluster_ready(ctx: Context, timeout: float = 30.0) -> float | None:
    """With several processes: wait until each one's users count as online for the others.

    A probe user is connected to each server; a POST to it through the next server
    must answer `DELIVERED`. Returns the seconds this took, None if not within `timeout`.
    """
    if len(ctx.urls) < 2:
        return 0.0
    started = time.monotonic()
    ctx.deadline = Deadline(timeout + CONNECT_TIMEOUT + 30)
    probes = [f"probe-{i}" for i in range(len(ctx.urls))]
    try:
        result = ctx.pool.call(
            ctx.pool.clients[0],
            "connect",
            CONNECT_TIMEOUT + 15,
            users=[[user_id, url] for user_id, url in zip(probes, ctx.urls, strict=True)],
            secret=ctx.servers.secret,
            concurrency=len(probes),
            timeout=CONNECT_TIMEOUT,
            deadline=CONNECT_TIMEOUT,
        )
        if result["failed"]:
            raise ScenarioFailed(f"probe connections failed: {result['failed']}")
        while time.monotonic() - started < timeout:
            ready = True
            for index, user_id in enumerate(probes):
                url = ctx.urls[(index + 1) % len(ctx.urls)]
                answer = post(ctx, url, [user_id], "bench readiness probe", 10)
                if answer.get("error") or answer["statuses"].get("DELIVERED") != 1:
                    ready = False
            if ready:
                return time.monotonic() - started
            time.sleep(0.2)
        return None
    finally:
        ctx.pool.call_all("reset", 60, workers=ctx.pool.clients)


# -- headlines and problems --------------------------------------------------------------------


def fmt(value, unit: str = "", digits: int = 0) -> str:
    """A figure for a headline: thousands separated, `-` when it is missing."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def pcts(summary: dict | None) -> str:
    """`p50 …, p99 …` of a `summary_ms` dict, for a headline."""
    summary = summary or {}
    return f"p50 {fmt(summary.get('p50_ms'), ' ms', 1)}, p99 {fmt(summary.get('p99_ms'), ' ms', 1)}"


def problems(f: dict) -> list[str]:
    """Everything in a scenario's figures that is not as it should be."""
    out = []
    for key, label in (
        ("connect_failures", "connect failures"),
        ("dropped_while_connecting", "dropped while connecting"),
        ("dropped_during_hold", "dropped during hold"),
        ("dropped", "connections dropped"),
        ("missing", "missing"),
        ("lost", "lost"),
        ("duplicates", "duplicates"),
        ("unexpected", "unexpected receipts"),
        ("post_errors", "POST errors"),
        ("fill_errors", "fill POST errors"),
    ):
        if f.get(key):
            out.append(f"{f[key]} {label}")
    for key in ("timed_out", "notify_timed_out"):
        if f.get(key):
            out.append("timed out waiting for deliveries")
    if f.get("teardown_idle") is False:
        out.append(f"server still busy {f.get('teardown_s')} s after the clients left")
    if "statuses" in f and set(f["statuses"]) - {"PENDING"}:
        out.append(f"statuses {f['statuses']} (expected all PENDING)")
    if "users" in f and "created" in f and f["created"] != f["users"]:
        out.append(f"created {f['created']} of {f['users']}")
    return out
