"""A query blocked in PostgreSQL must not block the eventlet process: psycopg2 is cooperative."""

import time

import pytest
import requests

from tests.support.cluster import HTTP_TIMEOUT, running_cluster, unique
from tests.support.services import TableLock
from tests.support.waiting import in_background, wait_for

pytestmark = pytest.mark.cluster

LOCK_HOLD_SECONDS = 1.5  # at least; longer until the other requests answered (they must, meanwhile)
ANSWER_TIMEOUT = 15


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory, "single", with_redis=False) as cluster:
        yield cluster


def timed(request):
    """Run `request()` and return (response, seconds it took)."""
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


def test_health_check_and_socketio_handshake_answer_while_a_post_waits_for_a_table_lock(
    nodes, record_figures
):
    server = nodes.servers["single"]
    handshake_url = server.url + "/socket.io/?EIO=4&transport=polling"

    with TableLock(nodes.database) as lock:
        locked_at = time.monotonic()
        post = in_background(lambda: timed(lambda: nodes.post(server.url, [unique("ivy")], "slow insert")))
        wait_for(
            lambda: lock.waiters() > 0 or not post["thread"].is_alive(),
            ANSWER_TIMEOUT,
            "the POST to wait for the table lock",
        )
        assert post["thread"].is_alive(), f"the POST did not wait for the lock: {post}"
        health = in_background(
            lambda: timed(lambda: requests.get(server.url + "/healthz", timeout=HTTP_TIMEOUT))
        )
        handshake = in_background(lambda: timed(lambda: requests.get(handshake_url, timeout=HTTP_TIMEOUT)))
        others = (health["thread"], handshake["thread"])
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while (any(t.is_alive() for t in others) and time.monotonic() < deadline) or (
            time.monotonic() - locked_at < LOCK_HOLD_SECONDS
        ):
            time.sleep(0.02)
        # Snapshot at the moment the lock is released: who has answered, who still waits.
        answered_while_locked = {"healthz": not others[0].is_alive(), "handshake": not others[1].is_alive()}
        post_waiting_at_release = post["thread"].is_alive()
        held = time.monotonic() - locked_at
    for thread in (post["thread"], *others):
        thread.join(HTTP_TIMEOUT)

    assert answered_while_locked == {"healthz": True, "handshake": True}, (
        "the process did not answer while one of its requests waited in PostgreSQL: the driver "
        f"blocks the eventlet hub ({answered_while_locked})"
    )
    assert post_waiting_at_release, "the POST did not wait for the lock until it was released"
    for outcome in (post, health, handshake):
        assert "error" not in outcome, repr(outcome["error"])
    (post_response, post_seconds), (health_response, health_seconds), (shake_response, shake_seconds) = (
        post["result"],
        health["result"],
        handshake["result"],
    )
    assert post_response.status_code == 201, post_response.text
    assert health_response.status_code == 200, health_response.text
    assert health_response.json() == {"status": "ok"}
    assert shake_response.status_code == 200, shake_response.text
    assert shake_response.text.startswith("0{") and '"sid"' in shake_response.text, shake_response.text
    record_figures(
        "slow_query",
        {
            "lockHeldSeconds": round(held, 3),
            "blockedPostSeconds": round(post_seconds, 3),
            "healthzSecondsDuringBlock": round(health_seconds, 3),
            "handshakeSecondsDuringBlock": round(shake_seconds, 3),
        },
    )
