"""The scenarios S1-S6, one module each, in the table `SCENARIOS`; what they share is in `common`."""

from collections.abc import Callable
from dataclasses import dataclass

from bench.scenarios import s1_connects, s2_idle, s3_fanout, s4_bulk, s5_drain, s6_sustained
from bench.scenarios.common import Context, Sizes


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One scenario: its title, its function, its time budget and parameters, its one-line summary."""

    title: str
    run: Callable[[Context, dict], None]
    budget: Callable[[Sizes], float]
    params: Callable[[Sizes], dict]
    headline: Callable[[dict], str]


# In the order they run.
SCENARIOS: dict[str, Scenario] = {
    "S1": Scenario(
        title="connect storm",
        run=s1_connects.run,
        budget=s1_connects.budget,
        params=s1_connects.params,
        headline=s1_connects.headline,
    ),
    "S2": Scenario(
        title="idle capacity",
        run=s2_idle.run,
        budget=s2_idle.budget,
        params=s2_idle.params,
        headline=s2_idle.headline,
    ),
    "S3": Scenario(
        title="online fan-out",
        run=s3_fanout.run,
        budget=s3_fanout.budget,
        params=s3_fanout.params,
        headline=s3_fanout.headline,
    ),
    "S4": Scenario(
        title="offline bulk create",
        run=s4_bulk.run,
        budget=s4_bulk.budget,
        params=s4_bulk.params,
        headline=s4_bulk.headline,
    ),
    "S5": Scenario(
        title="pending drain",
        run=s5_drain.run,
        budget=s5_drain.budget,
        params=s5_drain.params,
        headline=s5_drain.headline,
    ),
    "S6": Scenario(
        title="sustained",
        run=s6_sustained.run,
        budget=s6_sustained.budget,
        params=s6_sustained.params,
        headline=s6_sustained.headline,
    ),
}
