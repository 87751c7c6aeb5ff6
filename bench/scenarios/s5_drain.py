"""S5 pending drain: many notifications for one offline user, then it connects; until all arrived."""

from collections import Counter

from bench.scenarios.common import (
    CONNECT_TIMEOUT,
    SETTLE_SECONDS,
    Context,
    ScenarioFailed,
    Sizes,
    check_servers,
    collect,
    fmt,
    missing_details,
    ms,
    wait_for_receipts,
)
from bench.stats import Delivery, summary_ms


def run(ctx: Context, fig: dict) -> None:
    """Fill one offline user's pending notifications, then connect: how long until all arrived."""
    sizes = ctx.sizes
    n, user_id = sizes.s5_pending, "s5-user"
    fig.update(pending=n, fill_concurrency=sizes.s5_concurrency)
    jobs = [[ctx.urls[i % len(ctx.urls)], [user_id], f"bench s5 #{i}"] for i in range(n)]
    fill_budget = ctx.deadline.left(max(60.0, n / 10))
    answers = ctx.pool.call(
        ctx.pool.poster,
        "post_many",
        fill_budget + 30,
        jobs=jobs,
        token=ctx.admin_token,
        concurrency=sizes.s5_concurrency,
        timeout=30.0,
        deadline=fill_budget,
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
    fig["connect_ms"] = ms(result["times"][0])
    delivery = Delivery(expected)
    fig["timed_out"] = not wait_for_receipts(ctx, len(expected), max(60.0, sizes.delivery_wait))
    receipts, batches = collect(ctx)
    delivery.add((r[0], r[1], r[2]) for r in receipts)
    last = max(delivery.first_seen.values(), default=None)
    fig.update(
        received=delivery.received,
        missing=delivery.missing,
        missing_details=missing_details(delivery),
        duplicates=delivery.duplicates,
        unexpected=delivery.unexpected + delivery.wrong_user,
        drain_s=round(last - started, 3) if last is not None else None,
        pending_batches=batches,
        via_new_notification=sum(1 for r in receipts if r[3] == "n"),
    )


def headline(f: dict) -> str:
    return (
        f"{f.get('received', 0)}/{f.get('pending')} in {fmt(f.get('drain_s'), ' s', 2)} after connect "
        f"({f.get('pending_batches', '-')} batch); fill {fmt(f.get('fill_posts_per_s'), ' POST/s')}; "
        f"{f.get('missing', '-')} missing"
    )


def budget(sizes: Sizes) -> float:
    return max(60.0, sizes.s5_pending / 10) + max(60.0, sizes.delivery_wait) + 120


def params(sizes: Sizes) -> dict:
    return {"pending": sizes.s5_pending, "fill_concurrency": sizes.s5_concurrency}
