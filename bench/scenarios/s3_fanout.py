"""S3 online fan-out: users online, one admin POST to all of them; until when the last one has it."""

from bench.stats import summary_ms

from .common import Arrivals, Context, Scenario, ScenarioFailed, Sizes, connect_budget, fmt, ms, pcts


def run(ctx: Context, fig: dict) -> None:
    """Users online, one POST to all of them: until when the last one has it."""
    sizes = ctx.sizes
    fig["users"] = sizes.s3_users
    online = ctx.connect_online([f"s3-{i}" for i in range(sizes.s3_users)], sizes.s3_concurrency, fig)
    answer = ctx.post(ctx.urls[0], online, "bench s3 fan-out", 120)
    fig["post_ms"] = ms(answer["done"] - answer["sent"])
    if answer.get("error"):
        raise ScenarioFailed(f"POST failed: {answer['error']}")
    fig["delivered_in_response"] = answer["statuses"].get("DELIVERED", 0)
    fig["pending_in_response"] = answer["statuses"].get("PENDING", 0)
    delivery = Arrivals(answer["ids"])
    fig["timed_out"] = not ctx.wait_for_receipts(len(delivery.expected), sizes.delivery_wait)
    ctx.collect(delivery)
    latencies = delivery.latencies(dict.fromkeys(delivery.expected, answer["sent"]))
    fig.update(
        delivery.figures(),
        unexpected=delivery.unexpected + delivery.wrong_user,
        dropped=ctx.dropped(),
        last_arrival_ms=ms(max(latencies)) if latencies else None,
        latency_ms=summary_ms(latencies),
        latencies_ms=sorted(round(x * 1000.0, 3) for x in latencies),
    )


def headline(f: dict) -> str:
    post, last = fmt(f.get("post_ms"), " ms"), fmt(f.get("last_arrival_ms"), " ms")
    return (
        f"{f.get('received', 0)}/{f.get('connected', '-')} got it; POST {post}, last {last}; "
        f"{pcts(f.get('latency_ms'))}; {f.get('missing', '-')} missing"
    )


def budget(sizes: Sizes) -> float:
    return connect_budget(sizes.s3_users) + sizes.delivery_wait + 180


def params(sizes: Sizes) -> dict:
    return {"users": sizes.s3_users, "concurrency": sizes.s3_concurrency}


SCENARIO = Scenario(title="online fan-out", run=run, budget=budget, params=params, headline=headline)
