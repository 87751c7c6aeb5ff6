"""The scenarios S1-S6.

Each scenario fills a `figures` dict as it goes, so that a scenario stopped by its
deadline or by an error still reports what it measured. Every wait is bounded by the
scenario's deadline. Receipts are accounted by notification id (`stats.Delivery`):
each id counts once, later copies are duplicates.

Times: the client's receive time minus the time the POST was sent, both from
`time.time()` on this machine (the load processes share its clock).
"""

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

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


def _iso(stamp: float) -> str:
    """A `time.time()` value as UTC ISO 8601 with milliseconds."""
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _missing_details(delivery: Delivery) -> list[dict]:
    """The first few notifications that never arrived: id and user."""
    return [{"id": nid, "user": delivery.expected[nid]} for nid in delivery.missing_ids()[:MAX_DETAILS]]


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000.0, 2) if seconds is not None else None


def _latencies(delivery: Delivery, sent: dict[str, float]) -> list[float]:
    """Seconds from each POST's send time to the first receipt of its notification."""
    return [at - sent[nid] for nid, at in delivery.first_seen.items() if nid in sent]


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


# -- S1 ---------------------------------------------------------------------------------------


def s1_connect_storm(ctx: Context, fig: dict) -> None:
    """Connect many clients, a fixed number at a time: rate, connect times, failures."""
    n, c = ctx.sizes.s1_clients, ctx.sizes.s1_concurrency
    fig.update(clients=n, concurrency=c)
    result = connect_users(ctx, [f"s1-{i}" for i in range(n)], c)
    fig.update(result.figures())


# -- S2 ---------------------------------------------------------------------------------------


def s2_idle_capacity(ctx: Context, fig: dict) -> None:
    """Hold many idle connections past the ping interval; memory; then notify some."""
    sizes = ctx.sizes
    n = sizes.s2_connections
    fig.update(connections=n, concurrency=sizes.s2_concurrency, hold_s=sizes.s2_hold)
    before = ctx.servers.sample()
    fig["server_rss_before_mb"] = round(before["rss"] / MB, 1)
    result = connect_users(ctx, [f"s2-{i}" for i in range(n)], sizes.s2_concurrency)
    fig.update(result.figures())
    connected = ctx.servers.sample()
    fig["server_rss_connected_mb"] = round(connected["rss"] / MB, 1)
    fig["server_fds_connected"] = connected["fds"]
    ok = len(result.ok)
    if ok:
        fig["bytes_per_connection"] = round((connected["rss"] - before["rss"]) / ok)
    check_servers(ctx)

    dropped_before = dropped(ctx)
    sleep_watching(ctx, sizes.s2_hold)
    statuses = ctx.pool.call_all("status", 30, workers=ctx.pool.clients)
    drops = [d for s in statuses for d in s["drops"]]
    after = ctx.servers.sample()
    fig.update(
        dropped_while_connecting=dropped_before,
        dropped_during_hold=len(drops) - dropped_before,
        drop_reasons=dict(Counter(d[2] for d in drops).most_common(5)),
        connected_after_hold=sum(s["connected"] for s in statuses),
        server_rss_after_hold_mb=round(after["rss"] / MB, 1),
    )

    gone = {d[0] for d in drops}
    alive = [u for u in result.ok if u not in gone]
    targets = random.Random(ctx.seed).sample(alive, min(sizes.s2_notify, len(alive)))
    fig["notified"] = len(targets)
    if not targets:
        raise ScenarioFailed("no connection left to notify")
    answer = post(ctx, ctx.urls[0], targets, "bench s2", 60)
    fig["notify_post_ms"] = _ms(answer["done"] - answer["sent"])
    if answer.get("error"):
        raise ScenarioFailed(f"notify POST failed: {answer['error']}")
    fig["notify_delivered_in_response"] = answer["statuses"].get("DELIVERED", 0)
    delivery = Delivery(answer["ids"])
    fig["notify_timed_out"] = not wait_for_receipts(ctx, len(delivery.expected), sizes.delivery_wait)
    receipts, _ = collect(ctx)
    delivery.add((r[0], r[1], r[2]) for r in receipts)
    fig.update(
        received=delivery.received,
        missing=delivery.missing,
        missing_details=_missing_details(delivery),
        duplicates=delivery.duplicates,
        notify_latency_ms=summary_ms(_latencies(delivery, dict.fromkeys(delivery.expected, answer["sent"]))),
    )

    # Every client leaves at once: how long the server stays busy with that.
    started = time.monotonic()
    cpu_before = ctx.servers.sample()["cpu_s"]
    ctx.pool.call_all("reset", ctx.deadline.left(300) + 30, workers=ctx.pool.clients)
    fig["disconnect_all_s"] = round(time.monotonic() - started, 2)
    _, idle = ctx.servers.wait_idle(ctx.deadline.left(600))
    fig.update(
        teardown_s=round(time.monotonic() - started, 2),
        teardown_server_cpu_s=round(ctx.servers.sample()["cpu_s"] - cpu_before, 2),
        teardown_idle=idle,
    )


# -- S3 ---------------------------------------------------------------------------------------


def s3_fanout(ctx: Context, fig: dict) -> None:
    """Users online, one POST to all of them: until when the last one has it."""
    sizes = ctx.sizes
    fig["users"] = sizes.s3_users
    result = connect_users(ctx, [f"s3-{i}" for i in range(sizes.s3_users)], sizes.s3_concurrency)
    fig.update(result.figures())
    online = result.ok
    if not online:
        raise ScenarioFailed("no user connected")
    check_servers(ctx)
    answer = post(ctx, ctx.urls[0], online, "bench s3 fan-out", 120)
    fig["post_ms"] = _ms(answer["done"] - answer["sent"])
    if answer.get("error"):
        raise ScenarioFailed(f"POST failed: {answer['error']}")
    fig["delivered_in_response"] = answer["statuses"].get("DELIVERED", 0)
    fig["pending_in_response"] = answer["statuses"].get("PENDING", 0)
    delivery = Delivery(answer["ids"])
    fig["timed_out"] = not wait_for_receipts(ctx, len(delivery.expected), sizes.delivery_wait)
    receipts, _ = collect(ctx)
    delivery.add((r[0], r[1], r[2]) for r in receipts)
    latencies = _latencies(delivery, dict.fromkeys(delivery.expected, answer["sent"]))
    fig.update(
        received=delivery.received,
        missing=delivery.missing,
        missing_details=_missing_details(delivery),
        duplicates=delivery.duplicates,
        unexpected=delivery.unexpected + delivery.wrong_user,
        dropped=dropped(ctx),
        last_arrival_ms=_ms(max(latencies)) if latencies else None,
        latency_ms=summary_ms(latencies),
        latencies_ms=sorted(round(x * 1000.0, 3) for x in latencies),
    )


# -- S4 ---------------------------------------------------------------------------------------


def s4_bulk_create(ctx: Context, fig: dict) -> None:
    """One POST to many offline users: how fast the rows are stored."""
    n = ctx.sizes.s4_users
    fig["users"] = n
    answer = post(ctx, ctx.urls[0], [f"s4-{i}" for i in range(n)], "bench s4 bulk", max(60.0, n / 100))
    seconds = answer["done"] - answer["sent"]
    fig.update(post_s=round(seconds, 3), http_status=answer["status"])
    if answer.get("error"):
        raise ScenarioFailed(f"POST failed: {answer['error']}")
    created = sum(answer["statuses"].values())
    fig.update(created=created, statuses=answer["statuses"], rows_per_s=round(created / seconds, 1))


# -- S5 ---------------------------------------------------------------------------------------


def s5_pending_drain(ctx: Context, fig: dict) -> None:
    """Fill one offline user's pending notifications, then connect: how long until all arrived."""
    sizes = ctx.sizes
    n, user_id = sizes.s5_pending, "s5-user"
    fig.update(pending=n, fill_concurrency=sizes.s5_concurrency)
    jobs = [[ctx.urls[i % len(ctx.urls)], [user_id], f"bench s5 #{i}"] for i in range(n)]
    budget = ctx.deadline.left(max(60.0, n / 10))
    answers = ctx.pool.call(
        ctx.pool.poster,
        "post_many",
        budget + 30,
        jobs=jobs,
        token=ctx.admin_token,
        concurrency=sizes.s5_concurrency,
        timeout=30.0,
        deadline=budget,
    )
    done = [a for a in answers if a is not None and not a.get("error")]
    errors = Counter("deadline" if a is None else a["error"] for a in answers if a is None or a.get("error"))
    expected: dict[str, str] = {}
    statuses: Counter = Counter()
    for answer in done:
        expected.update(answer["ids"])
        statuses.update(answer["statuses"])
    fill = (max(a["done"] for a in done) - min(a["sent"] for a in done)) if done else 0.0
    fig.update(
        fill_s=round(fill, 3),
        fill_posts_per_s=round(len(done) / fill, 1) if fill > 0 else None,
        fill_errors=sum(errors.values()),
        fill_error_reasons=dict(errors.most_common(5)),
        fill_post_ms=summary_ms([a["done"] - a["sent"] for a in done]),
        stored_pending=statuses.get("PENDING", 0),
    )
    if not expected:
        raise ScenarioFailed("no notification was created")
    check_servers(ctx)
    ctx.servers.wait_idle(SETTLE_SECONDS)

    result = ctx.pool.call(
        ctx.pool.clients[0],
        "connect",
        CONNECT_TIMEOUT + 15,
        users=[[user_id, ctx.urls[0]]],
        secret=ctx.servers.secret,
        concurrency=1,
        timeout=CONNECT_TIMEOUT,
        deadline=CONNECT_TIMEOUT,
    )
    if result["failed"]:
        raise ScenarioFailed(f"connect failed: {result['failed'][user_id]}")
    started = result["start"]
    fig["connect_ms"] = _ms(result["times"][0])
    delivery = Delivery(expected)
    fig["timed_out"] = not wait_for_receipts(ctx, len(expected), max(60.0, sizes.delivery_wait))
    receipts, batches = collect(ctx)
    delivery.add((r[0], r[1], r[2]) for r in receipts)
    last = max(delivery.first_seen.values(), default=None)
    fig.update(
        received=delivery.received,
        missing=delivery.missing,
        missing_details=_missing_details(delivery),
        duplicates=delivery.duplicates,
        unexpected=delivery.unexpected + delivery.wrong_user,
        drain_s=round(last - started, 3) if last is not None else None,
        pending_batches=batches,
        via_new_notification=sum(1 for r in receipts if r[3] == "n"),
    )


# -- S6 ---------------------------------------------------------------------------------------


def s6_sustained(ctx: Context, fig: dict) -> None:
    """Users online, an open-loop stream of POSTs to random users: delivery, loss, CPU."""
    sizes = ctx.sizes
    fig.update(users=sizes.s6_users, target_rate=sizes.s6_rate, duration_s=sizes.s6_duration)
    result = connect_users(ctx, [f"s6-{i}" for i in range(sizes.s6_users)], min(100, sizes.s6_users))
    fig.update(result.figures())
    online = result.ok
    if not online:
        raise ScenarioFailed("no user connected")
    check_servers(ctx)
    ctx.servers.wait_idle(SETTLE_SECONDS)

    post_timeout = 10.0
    server_before = ctx.servers.sample()["cpu_s"]
    load_before = sum(ctx.pool.cpu_seconds().values())
    outcome = ctx.pool.call(
        ctx.pool.poster,
        "open_loop",
        sizes.s6_duration + post_timeout + 30,
        urls=ctx.urls,
        token=ctx.admin_token,
        users=online,
        rate=sizes.s6_rate,
        duration=sizes.s6_duration,
        seed=ctx.seed,
        timeout=post_timeout,
    )
    posts = outcome["posts"]
    done = [p for p in posts if p is not None and not p.get("error")]
    errors = Counter(("deadline" if p is None else p["error"]) for p in posts if p is None or p.get("error"))
    expected: dict[str, str] = {}
    sent: dict[str, float] = {}
    answer_of: dict[str, dict] = {}
    for answer in done:
        expected.update(answer["ids"])
        sent.update(dict.fromkeys(answer["ids"], answer["sent"]))
        answer_of.update(dict.fromkeys(answer["ids"], answer))
    delivery = Delivery(expected)
    fig["timed_out"] = not wait_for_receipts(ctx, len(expected), min(15.0, sizes.delivery_wait))
    server_cpu = ctx.servers.sample()["cpu_s"] - server_before
    load_cpu = sum(ctx.pool.cpu_seconds().values()) - load_before
    receipts, _ = collect(ctx)
    delivery.add((r[0], r[1], r[2]) for r in receipts)
    latencies = _latencies(delivery, sent)
    # Open loop over `duration` seconds: the rate is what was answered over that time, or
    # over the longer time until the last answer came when the server fell behind.
    window = max(sizes.s6_duration, max(p["done"] for p in done) - outcome["start"]) if done else 0.0
    fig.update(
        posts_scheduled=len(posts),
        posts_ok=len(done),
        post_errors=sum(errors.values()),
        post_error_reasons=dict(errors.most_common(5)),
        achieved_rate=round(len(done) / window, 1) if window > 0 else None,
        post_ms=summary_ms([p["done"] - p["sent"] for p in done]),
        schedule_lag_ms=summary_ms([p["sent"] - p["scheduled"] for p in posts if p is not None]),
        received=delivery.received,
        lost=delivery.missing,
        duplicates=delivery.duplicates,
        unexpected=delivery.unexpected + delivery.wrong_user,
        dropped=dropped(ctx),
        delivery_ms=summary_ms(latencies),
        lost_details=[
            {
                "id": nid,
                "user": expected[nid],
                "answered_status": next(iter(answer_of[nid]["statuses"]), None),
                "posted_to_server": answer_of[nid]["server"],
                "sent_at": _iso(answer_of[nid]["sent"]),
            }
            for nid in delivery.missing_ids()[:MAX_DETAILS]
        ],
        server_cpu_s=round(server_cpu, 3),
        server_cpu_ms_per_post=round(server_cpu * 1000.0 / len(done), 3) if done else None,
        load_cpu_s=round(load_cpu, 3),
        latencies_ms=sorted(round(x * 1000.0, 3) for x in latencies),
    )


# -- the table of scenarios ---------------------------------------------------------------------


def _fmt(value, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _pcts(summary: dict | None) -> str:
    summary = summary or {}
    return f"p50 {_fmt(summary.get('p50_ms'), ' ms', 1)}, p99 {_fmt(summary.get('p99_ms'), ' ms', 1)}"


def _headline_s1(f: dict) -> str:
    return (
        f"{f.get('connected', 0)}/{f.get('clients')} connected, {_fmt(f.get('connects_per_s'), '/s')}, "
        f"connect {_pcts(f.get('connect_ms'))}, {f.get('connect_failures', '-')} failed"
    )


def _headline_s2(f: dict) -> str:
    per = f.get("bytes_per_connection")
    return (
        f"{f.get('connected', 0)}/{f.get('connections')} held {_fmt(f.get('hold_s'), ' s')}, "
        f"{f.get('connect_failures', '-')} failed, {f.get('dropped_during_hold', '-')} dropped; "
        f"RSS {_fmt(f.get('server_rss_before_mb'), ' MB')} -> {_fmt(f.get('server_rss_connected_mb'), ' MB')}"
        f" ({_fmt(per / 1024 if per is not None else None, ' KiB', 1)}/conn); "
        f"notify {f.get('received', 0)}/{f.get('notified', '-')}, {f.get('missing', '-')} missing; "
        f"server busy {_fmt(f.get('teardown_s'), ' s', 1)} after all left"
    )


def _headline_s3(f: dict) -> str:
    return (
        f"{f.get('received', 0)}/{f.get('connected', '-')} got it; POST {_fmt(f.get('post_ms'), ' ms')}, "
        f"last {_fmt(f.get('last_arrival_ms'), ' ms')}; {_pcts(f.get('latency_ms'))}; "
        f"{f.get('missing', '-')} missing"
    )


def _headline_s4(f: dict) -> str:
    return (
        f"{f.get('created', 0)} rows in {_fmt(f.get('post_s'), ' s', 2)}, "
        f"{_fmt(f.get('rows_per_s'), ' rows/s')}"
    )


def _headline_s5(f: dict) -> str:
    return (
        f"{f.get('received', 0)}/{f.get('pending')} in {_fmt(f.get('drain_s'), ' s', 2)} after connect "
        f"({f.get('pending_batches', '-')} batch); fill {_fmt(f.get('fill_posts_per_s'), ' POST/s')}; "
        f"{f.get('missing', '-')} missing"
    )


def _headline_s6(f: dict) -> str:
    d = f.get("delivery_ms") or {}
    return (
        f"{_fmt(f.get('achieved_rate'), '', 1)}/{_fmt(f.get('target_rate'))} POST/s; delivery "
        f"{_pcts(d)}, max {_fmt(d.get('max_ms'), ' ms', 1)}; {f.get('lost', '-')} lost, "
        f"{f.get('duplicates', '-')} dup; {_fmt(f.get('server_cpu_ms_per_post'), ' ms', 2)} server CPU/POST"
    )


def _problems(f: dict) -> list[str]:
    """Everything in the figures that is not as it should be."""
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


@dataclass(frozen=True)
class Scenario:
    """One scenario: its function, its time budget, its one-line summary."""

    key: str
    title: str
    run: Callable[[Context, dict], None]
    budget: Callable[[Sizes], float]
    headline: Callable[[dict], str]
    params: Callable[[Sizes], dict]


def _connect_budget(n: int) -> float:
    return max(60.0, n / 20.0) + 30.0


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario(
            "S1",
            "connect storm",
            s1_connect_storm,
            lambda z: _connect_budget(z.s1_clients) + 60,
            _headline_s1,
            lambda z: {"clients": z.s1_clients, "concurrency": z.s1_concurrency},
        ),
        Scenario(
            "S2",
            "idle capacity",
            s2_idle_capacity,
            lambda z: 2 * _connect_budget(z.s2_connections) + z.s2_hold + z.delivery_wait + 120,
            _headline_s2,
            lambda z: {
                "connections": z.s2_connections,
                "concurrency": z.s2_concurrency,
                "hold_s": z.s2_hold,
                "notify": z.s2_notify,
            },
        ),
        Scenario(
            "S3",
            "online fan-out",
            s3_fanout,
            lambda z: _connect_budget(z.s3_users) + z.delivery_wait + 180,
            _headline_s3,
            lambda z: {"users": z.s3_users, "concurrency": z.s3_concurrency},
        ),
        Scenario(
            "S4",
            "offline bulk create",
            s4_bulk_create,
            lambda z: max(60.0, z.s4_users / 100) + 60,
            _headline_s4,
            lambda z: {"users": z.s4_users},
        ),
        Scenario(
            "S5",
            "pending drain",
            s5_pending_drain,
            lambda z: max(60.0, z.s5_pending / 10) + max(60.0, z.delivery_wait) + 120,
            _headline_s5,
            lambda z: {"pending": z.s5_pending, "fill_concurrency": z.s5_concurrency},
        ),
        Scenario(
            "S6",
            "sustained",
            s6_sustained,
            lambda z: _connect_budget(z.s6_users) + z.s6_duration + z.delivery_wait + 120,
            _headline_s6,
            lambda z: {"users": z.s6_users, "rate": z.s6_rate, "duration_s": z.s6_duration},
        ),
    )
}


def problems(figures: dict) -> list[str]:
    """The problems visible in a scenario's figures (see `_problems`)."""
    return _problems(figures)
