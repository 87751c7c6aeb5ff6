"""S7 throughput: users online, the highest open-loop POST rate delivered within the p99 limit, 0 lost.

A stepped search: short open-loop streams (as S6's) at increasing rates, ×1.5 from the
start rate while a step is good, then bisection between the highest good rate and the
lowest bad one above it (`next_rate`). Steps are measured apart: between two steps
the bench waits for the deliveries of the first (bounded) and for the servers to go
idle, so that one step's backlog does not count against the next.
"""

import math

from .common import (
    OPEN_LOOP_DELIVERY_WAIT,
    OPEN_LOOP_POST_TIMEOUT,
    SETTLE_SECONDS,
    Context,
    OpenLoop,
    Scenario,
    Sizes,
    connect_budget,
    fmt,
    machine_busy_seconds,
)

# Each good step is followed by one at this multiple of its rate.
FACTOR = 1.5
# Steps between the highest good and the lowest bad rate after the first bad step.
BISECTIONS = 2
# A step is good only if its generator kept the schedule this well (p99 of how late POSTs started)...
MAX_SCHEDULE_LAG_P99_MS = 20.0
# ...and the rate it achieved is at least this share of the target.
MIN_ACHIEVED_SHARE = 0.95
# Rates closer than this (relative to the lower one) are not worth another step.
MIN_GAP = 0.05
# Where a step's time goes beside its POSTs: the late answers, the delivery wait, settling.
STEP_OVERHEAD_S = OPEN_LOOP_POST_TIMEOUT + 5 + OPEN_LOOP_DELIVERY_WAIT + SETTLE_SECONDS


def next_rate(
    steps: list[tuple[float, bool]],
    start: float,
    ceiling: float,
    factor: float = FACTOR,
    bisections: int = BISECTIONS,
) -> float | None:
    """The rate of the next step given `steps` so far ((rate, good) in the order run); None: stop.

    Up from `start` by `factor` while every step is good, the last one at `ceiling` (stop
    after it if good). After the first bad step, at most `bisections` steps halfway between
    the highest good rate (0 if none) and the lowest bad rate above it; stop earlier when
    they are within `MIN_GAP` of each other. Rates are whole POST/s.
    """
    first = float(min(round(start), round(ceiling)))
    if not steps:
        return first if first >= 1 else None
    good = [rate for rate, ok in steps if ok]
    low = max(good, default=0.0)
    bad_above = [rate for rate, ok in steps if not ok and rate > low]
    if not bad_above:
        if low >= ceiling:
            return None
        return float(min(round(low * factor), round(ceiling)))
    first_bad = next(index for index, (_, ok) in enumerate(steps) if not ok)
    if len(steps) - 1 - first_bad >= bisections:
        return None
    high = min(bad_above)
    middle = float(round((low + high) / 2))
    if middle <= low or middle >= high or (low > 0 and high - low <= MIN_GAP * low):
        return None
    return middle


def step_verdict(step: dict, p99_limit_ms: float) -> list[str]:
    """Why a step is not good (empty when it is): p99, loss, errors, schedule, achieved rate."""
    reasons = []
    p99 = (step.get("delivery_ms") or {}).get("p99_ms")
    if p99 is None or p99 >= p99_limit_ms:
        reasons.append(f"p99 {fmt(p99, ' ms', 1)} >= {p99_limit_ms:g} ms")
    if step.get("lost"):
        reasons.append(f"{step['lost']} lost")
    if step.get("post_errors"):
        reasons.append(f"{step['post_errors']} POST errors")
    lag = (step.get("schedule_lag_ms") or {}).get("p99_ms")
    if lag is not None and lag > MAX_SCHEDULE_LAG_P99_MS:
        reasons.append(f"schedule lag p99 {lag:.1f} ms > {MAX_SCHEDULE_LAG_P99_MS:g} ms")
    achieved = step.get("achieved_rate")
    if achieved is None or achieved < MIN_ACHIEVED_SHARE * step["target_rate"]:
        reasons.append(f"achieved {fmt(achieved, '', 1)} < {MIN_ACHIEVED_SHARE:.0%} of target")
    return reasons


# What each step keeps of its stream's figures (not its latencies one by one).
STEP_KEYS = (
    "achieved_rate",
    "posts_scheduled",
    "posts_ok",
    "post_errors",
    "post_error_reasons",
    "post_ms",
    "schedule_lag_ms",
    "delivery_ms",
    "received",
    "lost",
    "lost_details",
    "duplicates",
    "unexpected",
    "dropped",
    "timed_out",
    "server_cpu_s",
    "server_cpu_ms_per_post",
    "load_cpu_s",
)


def run(ctx: Context, fig: dict) -> None:
    """Users online, then open-loop steps at rates chosen by `next_rate` until the search ends."""
    sizes = ctx.sizes
    fig.update(
        users=sizes.s7_users,
        step_s=sizes.s7_step,
        start_rate=sizes.s7_start_rate,
        max_rate=sizes.s7_max_rate,
        p99_limit_ms=sizes.s7_p99_ms,
    )
    online = ctx.connect_online([f"s7-{i}" for i in range(sizes.s7_users)], min(100, sizes.s7_users), fig)
    ctx.settle()
    stream = OpenLoop(ctx, online)
    wait = min(OPEN_LOOP_DELIVERY_WAIT, sizes.delivery_wait)
    steps: list[dict] = []
    fig["steps"] = steps
    fig["stopped_by"] = None
    while True:
        history = [(s["target_rate"], s["good"]) for s in steps]
        rate = next_rate(history, sizes.s7_start_rate, sizes.s7_max_rate)
        if rate is None:
            fig["stopped_by"] = "search done"
            break
        if ctx.deadline.left() < sizes.s7_step + STEP_OVERHEAD_S:
            fig["stopped_by"] = "deadline"
            break
        step: dict = {"target_rate": rate}
        steps.append(step)
        busy_before = machine_busy_seconds()
        figures = stream.run(rate, sizes.s7_step, ctx.seed + len(steps) - 1, wait)
        busy = machine_busy_seconds() - busy_before
        step.update((key, figures[key]) for key in STEP_KEYS)
        # CPU used by anything else on the machine meanwhile (noise: the figures are pessimistic).
        step["other_cpu_s"] = round(max(0.0, busy - figures["server_cpu_s"] - figures["load_cpu_s"]), 3)
        step["why_bad"] = step_verdict(step, sizes.s7_p99_ms)
        step["good"] = not step["why_bad"]
        _summarise(fig, steps)
        ctx.check_servers()
        ctx.settle()  # the next step starts on idle servers
    _summarise(fig, steps)
    stream.fetch()  # what came after its step's wait ended was late, not lost: this was never received
    fig["never_received"] = stream.delivery.missing


def _summarise(fig: dict, steps: list[dict]) -> None:
    """The scenario's figures from its steps so far: the best step, and the totals over all."""
    good = [s for s in steps if s["good"]]
    best = max(good, key=lambda s: s["target_rate"], default=None)
    bad = [s for s in steps if not s["good"] and (best is None or s["target_rate"] > best["target_rate"])]
    first_bad = min(bad, key=lambda s: s["target_rate"], default=None)
    fig.update(
        steps_run=len(steps),
        best_rate=best["target_rate"] if best else None,
        best_achieved_rate=best["achieved_rate"] if best else None,
        best_delivery_ms=best["delivery_ms"] if best else None,
        best_server_cpu_ms_per_post=best["server_cpu_ms_per_post"] if best else None,
        best_server_cpu_s=best["server_cpu_s"] if best else None,
        best_load_cpu_s=best["load_cpu_s"] if best else None,
        best_other_cpu_s=best["other_cpu_s"] if best else None,
        first_bad_rate=first_bad["target_rate"] if first_bad else None,
        first_bad_why=first_bad["why_bad"] if first_bad else None,
        # Summed over every step: loss anywhere is a problem, also at a rate that was too high.
        lost=sum(s["lost"] for s in steps),
        lost_steps=[s["target_rate"] for s in steps if s["lost"]],
        duplicates=sum(s["duplicates"] for s in steps),
        unexpected=sum(s["unexpected"] for s in steps),
        post_errors=sum(s["post_errors"] for s in steps),
        dropped=sum(s["dropped"] for s in steps),
        timed_out=any(s["timed_out"] for s in steps),
    )


def headline(f: dict) -> str:
    steps = f.get("steps") or []
    if f.get("best_rate") is None:
        best = f"no good rate (p99 < {fmt(f.get('p99_limit_ms'))} ms, 0 lost) from {fmt(f.get('start_rate'))}"
    else:
        best = (
            f"best {fmt(f['best_rate'])} POST/s ({fmt(f.get('best_achieved_rate'), '', 1)} achieved): "
            f"p99 {fmt((f.get('best_delivery_ms') or {}).get('p99_ms'), ' ms', 1)}, "
            f"{fmt(f.get('best_server_cpu_ms_per_post'), ' ms', 2)} server CPU/POST, "
            f"load {fmt(f.get('best_load_cpu_s'), ' CPU s', 1)}"
        )
    first_bad = f.get("first_bad_rate")
    above = f"; {fmt(first_bad)} bad ({', '.join(f.get('first_bad_why') or [])})" if first_bad else ""
    at_ceiling = f.get("best_rate") is not None and f["best_rate"] >= round(f["max_rate"])
    ceiling = "; ceiling reached" if at_ceiling else ""
    return (
        f"{best}{above}{ceiling}; {len(steps)} steps of {fmt(f.get('step_s'), ' s', 0)}; "
        f"{f.get('lost', '-')} lost, {f.get('duplicates', '-')} dup"
    )


def max_steps(sizes: Sizes) -> int:
    """The most steps a search can take: up from the start rate to the ceiling, then the bisections."""
    start = max(1.0, min(sizes.s7_start_rate, sizes.s7_max_rate))
    up = math.ceil(math.log(max(1.0, sizes.s7_max_rate / start)) / math.log(FACTOR)) + 1
    return up + BISECTIONS


def budget(sizes: Sizes) -> float:
    return connect_budget(sizes.s7_users) + max_steps(sizes) * (sizes.s7_step + STEP_OVERHEAD_S) + 120


def params(sizes: Sizes) -> dict:
    return {
        "users": sizes.s7_users,
        "step_s": sizes.s7_step,
        "start_rate": sizes.s7_start_rate,
        "max_rate": sizes.s7_max_rate,
        "p99_limit_ms": sizes.s7_p99_ms,
        "factor": FACTOR,
        "bisections": BISECTIONS,
    }


SCENARIO = Scenario(title="throughput", run=run, budget=budget, params=params, headline=headline)
