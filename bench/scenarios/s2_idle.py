"""S2 idle capacity: many connections held idle past the ping interval; memory, drops, then a notify."""

import random
import time
from collections import Counter

from bench.stats import summary_ms

from .common import Arrivals, Context, Scenario, ScenarioFailed, Sizes, connect_budget, fmt, ms

MB = 1024 * 1024


def run(ctx: Context, fig: dict) -> None:
    """Hold many idle connections past the ping interval; memory; then notify some."""
    sizes = ctx.sizes
    n = sizes.s2_connections
    fig.update(connections=n, concurrency=sizes.s2_concurrency, hold_s=sizes.s2_hold)
    before = ctx.servers.sample()
    fig["server_rss_before_mb"] = round(before["rss"] / MB, 1)
    result = ctx.connect_users([f"s2-{i}" for i in range(n)], sizes.s2_concurrency)
    fig.update(result.figures())
    connected = ctx.servers.sample()
    fig["server_rss_connected_mb"] = round(connected["rss"] / MB, 1)
    fig["server_fds_connected"] = connected["fds"]
    ok = len(result.ok)
    if ok:
        fig["bytes_per_connection"] = round((connected["rss"] - before["rss"]) / ok)
    ctx.check_servers()

    dropped_before = ctx.dropped()
    ctx.sleep_watching(sizes.s2_hold)
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
    answer = ctx.post(ctx.urls[0], targets, "bench s2", 60)
    fig["notify_post_ms"] = ms(answer["done"] - answer["sent"])
    if answer.get("error"):
        raise ScenarioFailed(f"notify POST failed: {answer['error']}")
    fig["notify_delivered_in_response"] = answer["statuses"].get("DELIVERED", 0)
    delivery = Arrivals(answer["ids"])
    fig["notify_timed_out"] = not ctx.wait_for_receipts(len(delivery.expected), sizes.delivery_wait)
    ctx.collect(delivery)
    latencies = delivery.latencies(dict.fromkeys(delivery.expected, answer["sent"]))
    fig.update(delivery.figures(), notify_latency_ms=summary_ms(latencies))

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


def headline(f: dict) -> str:
    per = f.get("bytes_per_connection")
    return (
        f"{f.get('connected', 0)}/{f.get('connections')} held {fmt(f.get('hold_s'), ' s')}, "
        f"{f.get('connect_failures', '-')} failed, {f.get('dropped_during_hold', '-')} dropped; "
        f"RSS {fmt(f.get('server_rss_before_mb'), ' MB')} -> {fmt(f.get('server_rss_connected_mb'), ' MB')}"
        f" ({fmt(per / 1024 if per is not None else None, ' KiB', 1)}/conn); "
        f"notify {f.get('received', 0)}/{f.get('notified', '-')}, {f.get('missing', '-')} missing; "
        f"server busy {fmt(f.get('teardown_s'), ' s', 1)} after all left"
    )


def budget(sizes: Sizes) -> float:
    return 2 * connect_budget(sizes.s2_connections) + sizes.s2_hold + sizes.delivery_wait + 120


def params(sizes: Sizes) -> dict:
    return {
        "connections": sizes.s2_connections,
        "concurrency": sizes.s2_concurrency,
        "hold_s": sizes.s2_hold,
        "notify": sizes.s2_notify,
    }


SCENARIO = Scenario(title="idle capacity", run=run, budget=budget, params=params, headline=headline)
