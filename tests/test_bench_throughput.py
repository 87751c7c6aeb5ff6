"""S7's stepped search: which rate comes next given the steps so far, and what makes a step good."""

import pytest

from bench.scenarios import SCENARIOS
from bench.scenarios.common import FULL, QUICK
from bench.scenarios.s7_throughput import BISECTIONS, max_steps, next_rate, step_verdict


def search(capacity: float, start: float = 100, ceiling: float = 3000) -> list[float]:
    """The rates a search runs against a server that is good up to `capacity` POST/s."""
    steps: list[tuple[float, bool]] = []
    while (rate := next_rate(steps, start, ceiling)) is not None:
        steps.append((rate, rate <= capacity))
        assert len(steps) < 30
    return [rate for rate, _ in steps]


def test_the_first_step_is_the_start_rate():
    assert next_rate([], 100, 3000) == 100
    assert next_rate([], 100, 60) == 60  # never above the ceiling


def test_up_by_half_while_good():
    assert next_rate([(100, True)], 100, 3000) == 150
    assert next_rate([(100, True), (150, True)], 100, 3000) == 225


def test_the_last_step_up_is_the_ceiling_and_a_good_one_there_ends_the_search():
    assert next_rate([(20, True), (30, True)], 20, 40) == 40
    assert next_rate([(20, True), (30, True), (40, True)], 20, 40) is None
    assert search(capacity=10_000, start=20, ceiling=40) == [20, 30, 40]


def test_after_the_first_bad_step_it_bisects_between_the_highest_good_and_the_lowest_bad():
    assert next_rate([(100, True), (150, True), (225, False)], 100, 3000) == 188
    assert next_rate([(100, True), (150, True), (225, False), (188, True)], 100, 3000) == 206
    assert next_rate([(100, True), (150, True), (225, False), (188, False)], 100, 3000) == 169


def test_the_bisections_are_bounded():
    steps = [(100, True), (150, True), (225, False), (188, True), (206, False)]
    assert BISECTIONS == 2
    assert next_rate(steps, 100, 3000) is None
    assert search(capacity=200) == [100, 150, 225, 188, 206]


def test_a_bad_first_step_bisects_down_from_it():
    assert next_rate([(100, False)], 100, 3000) == 50
    assert next_rate([(100, False), (50, True)], 100, 3000) == 75
    assert next_rate([(100, False), (50, False)], 100, 3000) == 25


def test_it_stops_when_good_and_bad_are_close():
    assert next_rate([(1000, True), (1040, False)], 1000, 3000) is None
    assert next_rate([(1, True), (2, False)], 1, 3000) is None  # no whole rate between


def test_only_bad_rates_above_the_highest_good_one_count():
    # The search itself never steps above a bad rate; given such steps, it climbs from the good one.
    assert next_rate([(100, True), (150, False), (200, True)], 100, 400) == 300


def test_max_steps_bounds_every_search():
    for capacity in (0, 50, 99, 100, 101, 149, 151, 700, 2999, 3000, 10_000):
        assert len(search(capacity)) <= max_steps(FULL)
    assert len(search(10_000, start=QUICK.s7_start_rate, ceiling=QUICK.s7_max_rate)) <= max_steps(QUICK) <= 5


def good_step(**changes) -> dict:
    step = {
        "target_rate": 100.0,
        "achieved_rate": 99.8,
        "delivery_ms": {"p99_ms": 12.0},
        "schedule_lag_ms": {"p99_ms": 1.5},
        "lost": 0,
        "post_errors": 0,
    }
    return {**step, **changes}


def test_a_step_is_good_within_the_p99_limit_with_nothing_lost_and_the_schedule_kept():
    assert step_verdict(good_step(), 50) == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"delivery_ms": {"p99_ms": 50.0}}, "p99"),
        ({"delivery_ms": {"p99_ms": None}}, "p99"),
        ({"lost": 1}, "lost"),
        ({"post_errors": 3}, "POST errors"),
        ({"schedule_lag_ms": {"p99_ms": 80.0}}, "schedule lag"),
        ({"achieved_rate": 90.0}, "achieved"),
        ({"achieved_rate": None}, "achieved"),
    ],
)
def test_a_step_is_bad_for_any_one_reason(changes, reason):
    reasons = step_verdict(good_step(**changes), 50)
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_s7_is_registered_with_its_sizes():
    spec = SCENARIOS["S7"]
    assert spec.title == "throughput"
    assert (FULL.s7_users, FULL.s7_step, FULL.s7_start_rate, FULL.s7_max_rate, FULL.s7_p99_ms) == (
        2000,
        5.0,
        100.0,
        3000.0,
        50.0,
    )
    assert spec.budget(QUICK) < spec.budget(FULL)
    assert spec.headline({}).startswith("no good rate")
