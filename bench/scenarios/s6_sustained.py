"""S6 sustained: users online, an open-loop stream of POSTs to random users; delivery, loss, CPU."""

from .common import OPEN_LOOP_DELIVERY_WAIT, Context, OpenLoop, Scenario, Sizes, connect_budget, fmt, pcts


def run(ctx: Context, fig: dict) -> None:
    """Users online, an open-loop stream of POSTs to random users: delivery, loss, CPU."""
    sizes = ctx.sizes
    fig.update(users=sizes.s6_users, target_rate=sizes.s6_rate, duration_s=sizes.s6_duration)
    online = ctx.connect_online([f"s6-{i}" for i in range(sizes.s6_users)], min(100, sizes.s6_users), fig)
    ctx.settle()
    stream = OpenLoop(ctx, online)
    wait = min(OPEN_LOOP_DELIVERY_WAIT, sizes.delivery_wait)
    stream.run(sizes.s6_rate, sizes.s6_duration, ctx.seed, wait, fig)


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
