"""What the scenarios share: sizes, context, deadline, connecting users, posting, receipts.

`OpenLoop` is the open-loop POST stream of S6 and of each step of S7, with its figures.

Each scenario fills a `figures` dict as it goes, so that a scenario stopped by its
deadline or by an error still reports what it measured. Every wait is bounded by the
scenario's deadline. Receipts are accounted by notification id (`Arrivals`):
each id counts once, later copies are duplicates.

Times: the client's receive time minus the time the POST was sent, both from
`time.time()` on this machine (the load processes share its clock).
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psutil

from bench.pool import LoadPool
from bench.servers import Servers
from bench.stats import Delivery, summary_ms
from bench.tokens import make_token

POLL_SECONDS = 0.05
CONNECT_TIMEOUT = 30.0
SETTLE_SECONDS = 10.0
# Missing or lost notifications listed one by one in the figures, at most.
MAX_DETAILS = 20


@dataclass
class Sizes:
    """Every size and duration of the scenarios; the defaults are the full run's (`FULL`)."""

    s1_clients: int = 1000
    s1_concurrency: int = 100
    s2_connections: int = 10_000
    s2_concurrency: int = 200
    s2_hold: float = 30.0
    s2_notify: int = 100
    s3_users: int = 1000
    s3_concurrency: int = 100
    s4_users: int = 10_000
    s5_pending: int = 1000
    s5_concurrency: int = 20
    s6_users: int = 500
    s6_rate: float = 100.0
    s6_duration: float = 20.0
    s7_users: int = 2000
    s7_step: float = 5.0
    s7_start_rate: float = 100.0
    s7_max_rate: float = 3000.0
    s7_p99_ms: float = 50.0
    s8_subscribers: int = 100_000
    s8_online: int = 1000
    s8_direct_users: int = 100
    s8_rate: float = 50.0
    s8_duration: float = 10.0
    delivery_wait: float = 30.0


FULL = Sizes()
# The smoke run (`--quick`): every scenario at tiny sizes.
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
    s7_users=20,
    s7_step=1.0,
    s7_start_rate=20.0,
    s7_max_rate=40.0,
    s8_subscribers=300,
    s8_online=20,
    s8_direct_users=5,
    s8_rate=10.0,
    s8_duration=2.0,
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


class ScenarioFailed(RuntimeError):
    """The scenario could not go on (its figures so far are still reported)."""


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


class Arrivals(Delivery):
    """What reached the clients, accounted against what the POST answers created (see `Delivery`)."""

    def figures(self) -> dict:
        """Received, missing (the first few listed with their user), duplicates."""
        return {
            "received": self.received,
            "missing": self.missing,
            "missing_details": [
                {"id": nid, "user": self.expected[nid]} for nid in self.missing_ids()[:MAX_DETAILS]
            ],
            "duplicates": self.duplicates,
        }

    def latencies(self, sent: dict[str, float]) -> list[float]:
        """Seconds from each POST's send time to the first receipt of its notification."""
        return [at - sent[nid] for nid, at in self.first_seen.items() if nid in sent]


@dataclass
class Context:
    """What a scenario works with: the servers, the load processes, the sizes, the deadline."""

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

    def connect_users(self, users: list[str], concurrency: int) -> Connected:
        """Connect `users`, user i through client process i % W to server i % P.

        At most `concurrency` connections are in progress at once over all processes.
        """
        workers = self.pool.clients
        shares: list[list] = [[] for _ in workers]
        for index, user_id in enumerate(users):
            shares[index % len(workers)].append([user_id, self.urls[index % len(self.urls)]])
        base, extra = divmod(concurrency, len(workers))
        budget = self.deadline.left(max(60.0, len(users) / 20.0))
        calls = [
            (
                worker,
                "connect",
                {
                    "users": share,
                    "secret": self.servers.secret,
                    "concurrency": max(1, base + (1 if k < extra else 0)),
                    "timeout": CONNECT_TIMEOUT,
                    "deadline": budget,
                },
            )
            for k, (worker, share) in enumerate(zip(workers, shares, strict=True))
            if share
        ]
        results = self.pool.call_each(calls, budget + 30)
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

    def connect_few(self, users: list[list[str]]) -> dict:
        """Connect a few users at once, `[user id, server url]` each, through the first client process."""
        return self.pool.call(
            self.pool.clients[0],
            "connect",
            CONNECT_TIMEOUT + 15,
            users=users,
            secret=self.servers.secret,
            concurrency=len(users),
            timeout=CONNECT_TIMEOUT,
            deadline=CONNECT_TIMEOUT,
        )

    def connect_online(self, users: list[str], concurrency: int, fig: dict) -> list[str]:
        """Connect `users`, their connect figures into `fig`; the ones online (raises if none is)."""
        result = self.connect_users(users, concurrency)
        fig.update(result.figures())
        online = result.ok
        if not online:
            raise ScenarioFailed("no user connected")
        self.check_servers()
        return online

    def settle(self) -> None:
        """Let the servers go idle (for `SETTLE_SECONDS` at most) before a measurement."""
        self.servers.wait_idle(SETTLE_SECONDS)

    def receipt_count(self) -> int:
        """Notifications received so far by all clients (each copy counted)."""
        return sum(self.pool.call_all("count", 30, workers=self.pool.clients))

    def wait_for_receipts(self, expected: int, timeout: float) -> bool:
        """Wait until the clients have at least `expected` receipts; False on timeout."""
        end = time.monotonic() + self.deadline.left(timeout)
        while True:
            if self.receipt_count() >= expected:
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(POLL_SECONDS)

    def collect(self, delivery: Delivery) -> tuple[list[tuple], int]:
        """Every receipt of every client process, accounted in `delivery`; and the pending batches."""
        receipts: list[tuple] = []
        batches = 0
        for result in self.pool.call_all("receipts", 60, workers=self.pool.clients):
            receipts.extend(tuple(r) for r in result["receipts"])
            batches += result["pending_batches"]
        delivery.add((r[0], r[1], r[2]) for r in receipts)
        return receipts, batches

    def post(self, url: str, user_ids: list[str], message: str, timeout: float) -> dict:
        """One admin POST through the poster process."""
        timeout = self.deadline.left(timeout)
        return self.pool.call(
            self.pool.poster,
            "post",
            timeout + 15,
            url=url,
            token=self.admin_token,
            user_ids=user_ids,
            message=message,
            timeout=timeout,
        )

    def dropped(self) -> int:
        """Connections closed by the other side (or the network) so far, over all clients."""
        return sum(len(s["drops"]) for s in self.pool.call_all("status", 30, workers=self.pool.clients))

    def check_servers(self) -> None:
        """Raise if a server process has exited."""
        dead = self.servers.dead()
        if dead:
            raise ScenarioFailed("; ".join(dead))

    def sleep_watching(self, seconds: float) -> None:
        """Sleep `seconds` (bounded by the deadline), checking every second that the servers live."""
        end = time.monotonic() + min(seconds, max(0.0, self.deadline.end - time.monotonic()))
        while time.monotonic() < end:
            self.check_servers()
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One scenario: its title, its function, its time budget and parameters, its one-line summary."""

    title: str
    run: Callable[[Context, dict], None]
    budget: Callable[[Sizes], float]
    params: Callable[[Sizes], dict]
    headline: Callable[[dict], str]


# -- figures ------------------------------------------------------------------------------------


def ms(seconds: float | None) -> float | None:
    return round(seconds * 1000.0, 2) if seconds is not None else None


def answered(answers: list[dict | None]) -> tuple[list[dict], Counter]:
    """The POST answers without an error, and the errors by reason (`deadline`: never answered)."""
    done = [a for a in answers if a is not None and not a.get("error")]
    errors = Counter("deadline" if a is None else a["error"] for a in answers if a is None or a.get("error"))
    return done, errors


def connect_budget(n: int) -> float:
    """Seconds a scenario allows for connecting `n` users (as `Context.connect_users` bounds them)."""
    return max(60.0, n / 20.0) + 30.0


# -- open-loop POST streams ---------------------------------------------------------------------

# Each POST of an open-loop stream is answered within this time or counts as an error.
OPEN_LOOP_POST_TIMEOUT = 10.0
# Longest wait for the deliveries of one open-loop stream after its last POST was answered.
OPEN_LOOP_DELIVERY_WAIT = 15.0


class OpenLoop:
    """Open-loop streams of POSTs to online users, run one after the other, each measured apart.

    Each POST creates one notification for a random user of `users` (POSTs alternating
    over the servers), started at its scheduled time whether or not earlier ones were
    answered. The client processes keep every receipt of the scenario; the receipts of
    each stream are the ones fetched since the previous stream, accounted by id in one
    `Arrivals` for the whole scenario, so that a late copy of an earlier stream's
    notification still counts as a duplicate rather than as unexpected.
    """

    def __init__(self, ctx: Context, users: list[str]) -> None:
        self.ctx = ctx
        self.users = users
        self.delivery = Arrivals({})
        self._fetched: dict[str, int] = {}  # receipts accounted so far, per client process
        self._dropped = 0

    def fetch(self) -> None:
        """Account the receipts that arrived since the last fetch."""
        ctx = self.ctx
        results = ctx.pool.call_all("receipts", 60, workers=ctx.pool.clients)
        for worker, result in zip(ctx.pool.clients, results, strict=True):
            start = self._fetched.get(worker.name, 0)
            self.delivery.add((r[0], r[1], r[2]) for r in result["receipts"][start:])
            self._fetched[worker.name] = len(result["receipts"])

    def run(self, rate: float, duration: float, seed: int, wait: float, fig: dict | None = None) -> dict:
        """One stream at `rate` POST/s for `duration` s; then its deliveries, waited for up to `wait` s.

        Fills `fig` (a new dict if None) as it goes and returns it: POSTs, achieved rate,
        delivery latencies, lost (created, per the POST answer, but not received when the
        wait ended), duplicates, and the server and load-generator CPU seconds from its
        first POST to the end of the wait.
        """
        ctx = self.ctx
        fetched_before = sum(self._fetched.values())
        duplicates_before = self.delivery.duplicates
        unexpected_before = self.delivery.unexpected + self.delivery.wrong_user
        server_before = ctx.servers.sample()["cpu_s"]
        load_before = sum(ctx.pool.cpu_seconds().values())
        outcome = ctx.pool.call(
            ctx.pool.poster,
            "open_loop",
            2 * duration + OPEN_LOOP_POST_TIMEOUT + 30,  # a generator falling behind takes longer
            urls=ctx.urls,
            token=ctx.admin_token,
            users=self.users,
            rate=rate,
            duration=duration,
            seed=seed,
            timeout=OPEN_LOOP_POST_TIMEOUT,
        )
        posts = outcome["posts"]
        done, errors = answered(posts)
        expected: dict[str, str] = {}
        sent: dict[str, float] = {}
        answer_of: dict[str, dict] = {}
        for answer in done:
            expected.update(answer["ids"])
            sent.update(dict.fromkeys(answer["ids"], answer["sent"]))
            answer_of.update(dict.fromkeys(answer["ids"], answer))
        self.delivery.expected.update(expected)
        fig = {} if fig is None else fig
        fig["timed_out"] = not ctx.wait_for_receipts(fetched_before + len(expected), wait)
        server_cpu = ctx.servers.sample()["cpu_s"] - server_before
        load_cpu = sum(ctx.pool.cpu_seconds().values()) - load_before
        self.fetch()
        first_seen = self.delivery.first_seen
        latencies = [first_seen[nid] - at for nid, at in sent.items() if nid in first_seen]
        lost = [nid for nid in expected if nid not in first_seen]
        dropped = ctx.dropped()
        # Open loop over `duration` seconds: the rate is what was answered over that time, or
        # over the longer time until the last answer came when the server fell behind.
        window = max(duration, max(p["done"] for p in done) - outcome["start"]) if done else 0.0
        fig.update(
            posts_scheduled=len(posts),
            posts_ok=len(done),
            post_errors=sum(errors.values()),
            post_error_reasons=dict(errors.most_common(5)),
            achieved_rate=round(len(done) / window, 1) if window > 0 else None,
            post_ms=summary_ms([p["done"] - p["sent"] for p in done]),
            schedule_lag_ms=summary_ms([p["sent"] - p["scheduled"] for p in posts if p is not None]),
            received=len(expected) - len(lost),
            lost=len(lost),
            duplicates=self.delivery.duplicates - duplicates_before,
            unexpected=self.delivery.unexpected + self.delivery.wrong_user - unexpected_before,
            dropped=dropped - self._dropped,
            delivery_ms=summary_ms(latencies),
            lost_details=[
                {
                    "id": nid,
                    "user": expected[nid],
                    "answered_status": next(iter(answer_of[nid]["statuses"]), None),
                    "posted_to_server": answer_of[nid]["server"],
                    "sent_at": iso(answer_of[nid]["sent"]),
                }
                for nid in lost[:MAX_DETAILS]
            ],
            server_cpu_s=round(server_cpu, 3),
            server_cpu_ms_per_post=round(server_cpu * 1000.0 / len(done), 3) if done else None,
            load_cpu_s=round(load_cpu, 3),
            latencies_ms=sorted(round(x * 1000.0, 3) for x in latencies),
        )
        self._dropped = dropped
        return fig


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle (all cores, since boot)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def iso(stamp: float) -> str:
    """A `time.time()` value as UTC ISO 8601 with milliseconds."""
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        result = ctx.connect_few([[user_id, url] for user_id, url in zip(probes, ctx.urls, strict=True)])
        if result["failed"]:
            raise ScenarioFailed(f"probe connections failed: {result['failed']}")
        while time.monotonic() - started < timeout:
            ready = True
            for index, user_id in enumerate(probes):
                url = ctx.urls[(index + 1) % len(ctx.urls)]
                answer = ctx.post(url, [user_id], "bench readiness probe", 10)
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
        ("topic_missing_online", "online subscribers without the topic send"),
        ("topic_recipients_wrong", "topic recipients other than the subscribers"),
        ("fill_errors", "fill POST errors"),
    ):
        if f.get(key):
            out.append(f"{f[key]} {label}")
    for key in ("timed_out", "notify_timed_out"):
        if f.get(key):
            out.append("timed out waiting for deliveries")
    if f.get("stopped_by") == "deadline":
        out.append("search stopped by the deadline")
    if f.get("teardown_idle") is False:
        out.append(f"server still busy {f.get('teardown_s')} s after the clients left")
    if "statuses" in f and set(f["statuses"]) - {"PENDING"}:
        out.append(f"statuses {f['statuses']} (expected all PENDING)")
    if "users" in f and "created" in f and f["created"] != f["users"]:
        out.append(f"created {f['created']} of {f['users']}")
    return out
