"""S4 offline bulk create: one POST to many users who are not connected; how fast the rows are stored."""

from .common import Context, Scenario, ScenarioFailed, Sizes, fmt


def run(ctx: Context, fig: dict) -> None:
    """One POST to many offline users: how fast the rows are stored."""
    n = ctx.sizes.s4_users
    fig["users"] = n
    answer = ctx.post(ctx.urls[0], [f"s4-{i}" for i in range(n)], "bench s4 bulk", max(60.0, n / 100))
    seconds = answer["done"] - answer["sent"]
    fig.update(post_s=round(seconds, 3), http_status=answer["status"])
    if answer.get("error"):
        raise ScenarioFailed(f"POST failed: {answer['error']}")
    created = sum(answer["statuses"].values())
    fig.update(created=created, statuses=answer["statuses"], rows_per_s=round(created / seconds, 1))


def headline(f: dict) -> str:
    return (
        f"{f.get('created', 0)} rows in {fmt(f.get('post_s'), ' s', 2)}, "
        f"{fmt(f.get('rows_per_s'), ' rows/s')}"
    )


def budget(sizes: Sizes) -> float:
    return max(60.0, sizes.s4_users / 100) + 60


def params(sizes: Sizes) -> dict:
    return {"users": sizes.s4_users}


SCENARIO = Scenario(title="offline bulk create", run=run, budget=budget, params=params, headline=headline)
