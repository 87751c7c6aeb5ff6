"""S6 sustained: users online, an open-loop stream of POSTs to random users; delivery, loss, CPU."""

from datetime import UTC, datetime

from bench.stats import summary_ms

from .common import MAX_DETAILS, Arrivals, Context, Scenario, Sizes, answered, connect_budget, fmt, pcts


def run(ctx: Context, fig: dict) -> None:
    """Users online, an open-loop stream of POSTs to random users: delivery, loss, CPU."""
    sizes = ctx.sizes
    fig.update(users=sizes.s6_users, target_rate=sizes.s6_rate, duration_s=sizes.s6_duration)
    online = ctx.connect_online([f"s6-{i}" for i in range(sizes.s6_users)], min(100, sizes.s6_users), fig)
    ctx.settle()

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
    done, errors = answered(posts)
    expected: dict[str, str] = {}
    sent: dict[str, float] = {}
    answer_of: dict[str, dict] = {}
    for answer in done:
        expected.update(answer["ids"])
        sent.update(dict.fromkeys(answer["ids"], answer["sent"]))
        answer_of.update(dict.fromkeys(answer["ids"], answer))
    delivery = Arrivals(expected)
    fig["timed_out"] = not ctx.wait_for_receipts(len(expected), min(15.0, sizes.delivery_wait))
    server_cpu = ctx.servers.sample()["cpu_s"] - server_before
    load_cpu = sum(ctx.pool.cpu_seconds().values()) - load_before
    ctx.collect(delivery)
    latencies = delivery.latencies(sent)
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
        dropped=ctx.dropped(),
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


def _iso(stamp: float) -> str:
    """A `time.time()` value as UTC ISO 8601 with milliseconds."""
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def headline(f: dict) -> str:
    d = f.get("delivery_ms") or {}
    return (
        f"{fmt(f.get('achieved_rate'), '', 1)}/{fmt(f.get('target_rate'))} POST/s; delivery "
        f"{pcts(d)}, max {fmt(d.get('max_ms'), ' ms', 1)}; {f.get('lost', '-')} lost, "
        f"{f.get('duplicates', '-')} dup; {fmt(f.get('server_cpu_ms_per_post'), ' ms', 2)} server CPU/POST"
    )


def budget(sizes: Sizes) -> float:
    return connect_budget(sizes.s6_users) + sizes.s6_duration + sizes.delivery_wait + 120


def params(sizes: Sizes) -> dict:
    return {"users": sizes.s6_users, "rate": sizes.s6_rate, "duration_s": sizes.s6_duration}


SCENARIO = Scenario(title="sustained", run=run, budget=budget, params=params, headline=headline)
