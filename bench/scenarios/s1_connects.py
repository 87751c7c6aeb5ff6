"""S1 connect storm: many clients connect, a fixed number at a time; rate, connect times, failures."""

from .common import Context, Scenario, Sizes, connect_budget, fmt, pcts


def run(ctx: Context, fig: dict) -> None:
    """Connect many clients, a fixed number at a time: rate, connect times, failures."""
    n, c = ctx.sizes.s1_clients, ctx.sizes.s1_concurrency
    fig.update(clients=n, concurrency=c)
    result = ctx.connect_users([f"s1-{i}" for i in range(n)], c)
    fig.update(result.figures())


def headline(f: dict) -> str:
    return (
        f"{f.get('connected', 0)}/{f.get('clients')} connected, {fmt(f.get('connects_per_s'), '/s')}, "
        f"connect {pcts(f.get('connect_ms'))}, {f.get('connect_failures', '-')} failed"
    )


def budget(sizes: Sizes) -> float:
    return connect_budget(sizes.s1_clients) + 60


def params(sizes: Sizes) -> dict:
    return {"clients": sizes.s1_clients, "concurrency": sizes.s1_concurrency}


SCENARIO = Scenario(title="connect storm", run=run, budget=budget, params=params, headline=headline)
