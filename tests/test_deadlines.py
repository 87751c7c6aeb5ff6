"""The per-connection deadline scheduler (app/deadlines.py), on a clock the tests move."""

import pytest

from app.realtime import deadlines as module
from app.realtime.deadlines import Deadlines


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def scheduler(clock):
    started = []
    scheduler = Deadlines(start_task=started.append, sleep=lambda _seconds: None, clock=clock)
    scheduler.started = started
    return scheduler


def test_actions_run_once_when_due_in_time_order(scheduler, clock):
    ran = []
    scheduler.set("b", 1002, lambda: ran.append("b"))
    scheduler.set("a", 1001, lambda: ran.append("a"))
    scheduler.set("c", 1005, lambda: ran.append("c"))
    assert scheduler.run_due() == 0
    clock.now = 1002
    assert scheduler.run_due() == 2
    assert ran == ["a", "b"]
    assert scheduler.run_due() == 0
    assert len(scheduler) == 1


def test_setting_a_key_again_moves_its_deadline(scheduler, clock):
    ran = []
    scheduler.set("token", 1001, lambda: ran.append("first"))
    scheduler.set("token", 1010, lambda: ran.append("moved"))
    clock.now = 1005
    scheduler.run_due()
    assert ran == []
    assert scheduler.when("token") == 1010
    clock.now = 1010
    scheduler.run_due()
    assert ran == ["moved"]


def test_a_cancelled_deadline_never_runs(scheduler, clock):
    ran = []
    scheduler.set("connect", 1001, lambda: ran.append("connect"))
    scheduler.cancel("connect")
    clock.now = 2000
    assert scheduler.run_due() == 0
    assert ran == [] and scheduler.when("connect") is None


def test_a_failing_action_does_not_stop_the_others(scheduler, clock):
    ran = []
    scheduler.set("bad", 1001, lambda: 1 / 0)
    scheduler.set("good", 1001, lambda: ran.append("good"))
    clock.now = 1001
    assert scheduler.run_due() == 2
    assert ran == ["good"]


def test_one_background_task_however_many_deadlines(scheduler):
    for index in range(100):
        scheduler.set(index, 1001 + index, lambda: None)
    assert len(scheduler.started) == 1


def test_stale_heap_entries_are_compacted(scheduler, clock, monkeypatch):
    monkeypatch.setattr(module, "COMPACT_MINIMUM", 10)
    for round_ in range(50):
        scheduler.set("refreshed", 1001 + round_, lambda: None)
    assert len(scheduler._heap) <= 2 * len(scheduler) + 10
    clock.now = 1050
    assert scheduler.run_due() == 1
