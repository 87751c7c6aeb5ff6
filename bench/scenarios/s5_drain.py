"""S5 pending drain: many notifications for one offline user, then it connects; until all arrived."""

from collections import Counter

from bench.stats import summary_ms

from .common import Arrivals, Context, Scenario, ScenarioFailed, Sizes, answered, fmt, ms


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
    done, errors = answered(answers)
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
    ctx.check_servers()
    ctx.settle()

    result = ctx.connect_few([[user_id, ctx.urls[0]]])
    if result["failed"]:
        raise ScenarioFailed(f"connect failed: {result['failed'][user_id]}")
    started = result["start"]
    fig["connect_ms"] = ms(result["times"][0])
    delivery = Arrivals(expected)
    fig["timed_out"] = not ctx.wait_for_receipts(len(expected), max(60.0, sizes.delivery_wait))
    receipts, batches = ctx.collect(delivery)
    last = max(delivery.first_seen.values(), default=None)
    fig.update(
        delivery.figures(),
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


SCENARIO = Scenario(title="pending drain", run=run, budget=budget, params=params, headline=headline)
