"""S3 online fan-out: users online, one admin POST to all of them; until when the last one has it."""

from bench.scenarios.common import (
    Context,
    ScenarioFailed,
    Sizes,
    check_servers,
    collect,
    connect_budget,
    connect_users,
    dropped,
    fmt,
    missing_details,
    ms,
    pcts,
    post,
    receive_latencies,
    wait_for_receipts,
)
from bench.stats import Delivery, summary_ms


def run(ctx: Context, fig: dict) -> None:
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
    fig["post_ms"] = ms(answer["done"] - answer["sent"])
    if answer.get("error"):
        raise ScenarioFailed(f"POST failed: {answer['error']}")
    fig["delivered_in_response"] = answer["statuses"].get("DELIVERED", 0)
    fig["pending_in_response"] = answer["statuses"].get("PENDING", 0)
    delivery = Delivery(answer["ids"])
    fig["timed_out"] = not wait_for_receipts(ctx, len(delivery.expected), sizes.delivery_wait)
    receipts, _ = collect(ctx)
    delivery.add((r[0], r[1], r[2]) for r in receipts)
    latencies = receive_latencies(delivery, dict.fromkeys(delivery.expected, answer["sent"]))
    fig.update(
        received=delivery.received,
        missing=delivery.missing,
        missing_details=missing_details(delivery),
        duplicates=delivery.duplicates,
        unexpected=delivery.unexpected + delivery.wrong_user,
        dropped=dropped(ctx),
        last_arrival_ms=ms(max(latencies)) if latencies else None,
        latency_ms=summary_ms(latencies),
        latencies_ms=sorted(round(x * 1000.0, 3) for x in latencies),
    )


def headline(f: dict) -> str:
    return (
        f"{f.get('received', 0)}/{f.get('connected', '-')} got it; POST {fmt(f.get('post_ms'), ' ms')}, "
        f"last {fmt(f.get('last_arrival_ms'), ' ms')}; {pcts(f.get('latency_ms'))}; "
        f"{f.get('missing', '-')} missing"
    )


def budget(sizes: Sizes) -> float:
    return connect_budget(sizes.s3_users) + sizes.delivery_wait + 180


def params(sizes: Sizes) -> dict:
    return {"users": sizes.s3_users, "concurrency": sizes.s3_concurrency}
