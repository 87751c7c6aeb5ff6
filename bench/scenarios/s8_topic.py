"""S8 topic send: a topic of many subscribers, some online, sent to while a stream of direct sends runs.

Measures the topic POST's answer time, the time until its last online subscriber has it,
the server's peak RSS, and the delivery p99 of the concurrent direct sends (other requests
of the process must keep being served while the topic is stored in batches).
"""

import json
import threading
import time
import urllib.request

from .common import (
    OPEN_LOOP_DELIVERY_WAIT,
    Context,
    OpenLoop,
    Scenario,
    ScenarioFailed,
    Sizes,
    connect_budget,
    fmt,
    ms,
)

TOPIC = "bench-s8"
SUBSCRIBE_BATCH = 10_000  # the admin route's most per call
POLL_SECONDS = 0.05


def _admin(ctx: Context, method: str, path: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(
        ctx.urls[0] + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ctx.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def _subscribe(ctx: Context, users: list[str], fig: dict) -> None:
    start = time.monotonic()
    for i in range(0, len(users), SUBSCRIBE_BATCH):
        _admin(
            ctx,
            "PUT",
            f"/v1/admin/topics/{TOPIC}/subscribers",
            {"userIds": users[i : i + SUBSCRIBE_BATCH]},
            120,
        )
    fig["subscribe_s"] = round(time.monotonic() - start, 3)


class PeakRss(threading.Thread):
    """Samples the servers' RSS until stopped; the highest seen."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(daemon=True)
        self.ctx, self.peak, self.done = ctx, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.ctx.servers.sample()["rss"])
            self.done.wait(0.1)


def run(ctx: Context, fig: dict) -> None:
    """Subscribers, some online, direct users online; a topic send in the middle of a direct stream."""
    sizes = ctx.sizes
    fig.update(subscribers=sizes.s8_subscribers, online=sizes.s8_online, direct_rate=sizes.s8_rate)
    subscribers = [f"s8-t-{i}" for i in range(sizes.s8_subscribers)]
    _subscribe(ctx, subscribers, fig)
    online = ctx.connect_online(subscribers[: sizes.s8_online], min(100, sizes.s8_online), fig)
    direct = ctx.connect_users([f"s8-d-{i}" for i in range(sizes.s8_direct_users)], 50).ok
    if not direct:
        raise ScenarioFailed("no direct user connected")
    ctx.settle()
    rss_before = ctx.servers.sample()["rss"]
    peak = PeakRss(ctx)
    topic: dict = {}

    def send_topic() -> None:
        time.sleep(min(1.0, sizes.s8_duration / 4))
        topic["sent"] = time.time()
        try:
            topic["answer"] = _admin(
                ctx, "POST", "/v1/admin/notifications", {"topic": TOPIC, "message": "s8"}, 300
            )
        except OSError as exc:
            topic["error"] = str(exc)
        topic["done"] = time.time()

    sender = threading.Thread(target=send_topic, daemon=True)
    peak.start()
    sender.start()
    stream = OpenLoop(ctx, direct)
    stream.run(
        sizes.s8_rate, sizes.s8_duration, ctx.seed, min(OPEN_LOOP_DELIVERY_WAIT, sizes.delivery_wait), fig
    )
    sender.join(ctx.deadline.left(300))
    if "answer" not in topic:
        raise ScenarioFailed(f"topic POST failed: {topic.get('error', 'no answer')}")
    last = _last_topic_receipt(ctx, set(online), sizes.delivery_wait)
    peak.done.set()
    peak.join(5)
    answer = topic["answer"]
    fig.update(
        topic_answer=answer,
        topic_post_ms=ms(topic["done"] - topic["sent"]),
        topic_last_online_ms=ms(last["at"] - topic["sent"]) if last["at"] else None,
        topic_online_received=last["count"],
        topic_missing_online=len(online) - last["count"],
        # the topic's receipts are not the direct stream's
        unexpected=max(0, fig.get("unexpected", 0) - last["count"]),
        server_rss_before_mb=round(rss_before / 2**20, 1),
        server_rss_peak_mb=round(peak.peak / 2**20, 1),
    )
    if answer.get("recipients") != sizes.s8_subscribers:
        fig["topic_recipients_wrong"] = answer.get("recipients")


def _last_topic_receipt(ctx: Context, online: set[str], wait: float) -> dict:
    """Wait until every online subscriber has the topic send (or `wait` s); how many, and the last time."""
    end = time.monotonic() + ctx.deadline.left(wait)
    while True:
        receipts = [
            r
            for result in ctx.pool.call_all("receipts", 60, workers=ctx.pool.clients)
            for r in result["receipts"]
            if r[0] in online
        ]
        first: dict[str, float] = {}
        for user, _nid, at, *_ in receipts:
            first[user] = min(at, first.get(user, at))
        if len(first) >= len(online) or time.monotonic() >= end:
            return {"count": len(first), "at": max(first.values(), default=None)}
        time.sleep(POLL_SECONDS)


def headline(f: dict) -> str:
    d = f.get("delivery_ms") or {}
    return (
        f"topic of {f.get('subscribers')}: POST {fmt(f.get('topic_post_ms'), ' ms')}, last of "
        f"{f.get('online')} online {fmt(f.get('topic_last_online_ms'), ' ms')} "
        f"({f.get('topic_missing_online', '-')} missing); "
        f"RSS peak {fmt(f.get('server_rss_peak_mb'), ' MB')}; "
        f"direct sends meanwhile p99 {fmt(d.get('p99_ms'), ' ms', 1)}, {f.get('lost', '-')} lost"
    )


def budget(sizes: Sizes) -> float:
    return (
        connect_budget(sizes.s8_online + sizes.s8_direct_users)
        + sizes.s8_duration
        + sizes.delivery_wait
        + 300
    )


def params(sizes: Sizes) -> dict:
    return {
        "subscribers": sizes.s8_subscribers,
        "online": sizes.s8_online,
        "direct_users": sizes.s8_direct_users,
        "direct_rate": sizes.s8_rate,
        "duration_s": sizes.s8_duration,
    }


SCENARIO = Scenario(title="topic send", run=run, budget=budget, params=params, headline=headline)
