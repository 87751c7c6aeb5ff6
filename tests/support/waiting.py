"""Waiting in tests: poll a condition until a deadline, for started processes, for work in a thread."""

import threading
import time

import pytest

from tests.support.server import ServerStartError

WAIT_TIMEOUT = 10  # seconds, unless a caller asks for another bound
POLL_INTERVAL = 0.02


def wait_for(predicate, timeout: float = WAIT_TIMEOUT, message=""):
    """Poll `predicate` every 20 ms until it is truthy and return its value.

    Fails the test after `timeout` seconds; `message` (a string, or a callable
    that builds one at that moment) says what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = (message() if callable(message) else message) or getattr(
                predicate, "__name__", "condition"
            )
            pytest.fail(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(POLL_INTERVAL)


def in_background(work) -> dict:
    """Run `work()` in a thread; the returned dict gets "result" or "error", and "thread"."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = work()
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    outcome["thread"] = thread
    thread.start()
    return outcome


def ready_or_fail(*processes) -> None:
    """Wait until each started process (tests/support/server.py) is ready; fail the test when one is not."""
    for process in processes:
        try:
            process.wait_ready()
        except ServerStartError as exc:
            pytest.fail(str(exc))
