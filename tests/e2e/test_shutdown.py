"""SIGTERM on a process of a PostgreSQL + Redis cluster: running requests finish, sockets and presence go."""

import signal
import threading
import time
from dataclasses import dataclass, field

import pytest

from tests.support.cluster import (
    DELIVERY_TIMEOUT,
    HTTP_TIMEOUT,
    PRESENCE_PREFIX,
    Cluster,
    log_tails_if_failed,
    running_cluster,
    unique,
)
from tests.support.logs import PROCESS_REAPED, USER_DISCONNECTED, logged
from tests.support.ports import port_refuses
from tests.support.server import STOP_TIMEOUT
from tests.support.services import TableLock
from tests.support.waiting import in_background, wait_for

pytestmark = pytest.mark.cluster

GRACEFUL_TIMEOUT = 20  # the server's default: how long it waits for running requests
BLOCK_TIMEOUT = 15


@dataclass
class Stop:
    """What happened around one SIGTERM sent while a POST was blocked in the database."""

    cluster: Cluster
    user: str
    process_id: str
    post: dict
    refused_while_blocked: bool = False
    disconnected_while_blocked: bool = False
    post_running_when_released: bool = False
    exit_code: int | None = None
    seconds: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory, "stopping", "staying") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def stop(cluster, record_figures):
    """SIGTERM the "stopping" process while a POST to it waits for a table lock, then release it."""
    cluster.ensure_running()
    stopping = cluster.servers["stopping"]
    user, other = unique("dave"), unique("gina")
    client = cluster.connect(stopping, user)
    process_id = stopping.presence_id()

    with TableLock(cluster.database) as lock:
        post = in_background(lambda: cluster.post(stopping.url, [user, other], "sent during a deploy"))
        wait_for(
            lambda: lock.waiters() > 0 or "result" in post or "error" in post,
            BLOCK_TIMEOUT,
            "the POST to wait for the table lock",
        )
        assert lock.waiters() > 0, f"the POST did not block on the lock: {post}"
        signalled = time.monotonic()
        stopping.send_signal(signal.SIGTERM)
        refused = wait_for(
            lambda: port_refuses(stopping.port) or not stopping.running,
            STOP_TIMEOUT,
            "new connections to be refused",
        )
        refused_at = time.monotonic()
        client.disconnected.wait(STOP_TIMEOUT)
        outcome = Stop(cluster, user, process_id, post)
        outcome.refused_while_blocked = bool(refused) and stopping.running
        outcome.disconnected_while_blocked = client.disconnected.is_set() and stopping.running
        outcome.post_running_when_released = post["thread"].is_alive()
        released = time.monotonic()
    post["thread"].join(HTTP_TIMEOUT)
    outcome.exit_code = stopping.wait_exit(GRACEFUL_TIMEOUT + STOP_TIMEOUT)
    exited = time.monotonic()
    outcome.seconds = {
        "signalToRefused": round(refused_at - signalled, 3),
        "releaseToExit": round(exited - released, 3),
    }
    record_figures("graceful_stop", outcome.seconds)
    return outcome


@pytest.fixture
def stopped(request, stop):
    """The outcome of the stop; this test's sockets closed afterwards."""
    failed_before = request.session.testsfailed
    yield stop
    log_tails_if_failed(request, stop.cluster, failed_before)
    stop.cluster.disconnect_clients()


def test_stopping_process_refuses_new_connections_and_closes_sockets_while_a_request_runs(stopped):
    assert stopped.refused_while_blocked, "the process still accepted connections after SIGTERM"
    assert stopped.disconnected_while_blocked, "the connected socket was not closed by the stop"
    assert stopped.post_running_when_released, f"the POST ended before the lock was released: {stopped.post}"


def test_request_running_at_sigterm_completes_and_is_stored(stopped):
    assert "error" not in stopped.post, f"the running POST got no answer: {stopped.post['error']!r}"
    response = stopped.post["result"]
    assert response.status_code == 201, response.text
    answered = {n["id"]: n["status"] for n in response.json()["notifications"]}
    assert stopped.cluster.database.statuses(answered) == answered
    assert len(answered) == 2


def test_stopped_process_exits_with_code_zero(stopped):
    assert stopped.exit_code == 0, (
        f"exit code {stopped.exit_code} "
        f"(None: still running {GRACEFUL_TIMEOUT + STOP_TIMEOUT} s after SIGTERM)"
    )


def test_stopped_process_takes_its_sockets_out_of_shared_presence_at_once(stopped):
    cluster = stopped.cluster
    staying = cluster.servers["staying"]
    redis = cluster.redis.client()

    answer = cluster.send(staying.url, [stopped.user], "after the stop")[stopped.user]

    prefix = PRESENCE_PREFIX
    assert redis.hgetall(f"{prefix}:user:{stopped.user}") == {}
    assert not redis.exists(f"{prefix}:alive:{stopped.process_id}", f"{prefix}:users:{stopped.process_id}")
    assert answer["status"] == "PENDING"
    # Seen offline because the process cleaned up, not because a survivor reaped it after the TTL.
    assert not logged(staying.log_since(), PROCESS_REAPED, stopped.process_id)


def test_notification_in_flight_at_the_stop_reaches_its_user_on_another_process(stopped):
    cluster = stopped.cluster
    staying = cluster.servers["staying"]
    [in_flight] = [n for n in stopped.post["result"].json()["notifications"] if n["userId"] == stopped.user]

    again = cluster.connect(staying, stopped.user, name="dave again")

    try:
        wait_for(
            lambda: again.got(in_flight["id"]),
            DELIVERY_TIMEOUT,
            lambda: (
                f"the notification created while the stop closed {stopped.user}'s socket (answered "
                f"{in_flight['status']}, stored {cluster.database.statuses([in_flight['id']])}) to reach them"
            ),
        )
    finally:
        offset = staying.log_size()
        again.disconnect()
        staying.wait_log(USER_DISCONNECTED, stopped.user, since=offset)


def test_notification_unacknowledged_at_the_stop_is_sent_again_on_reconnect(nodes):
    stopping, staying = nodes.servers["stopping"], nodes.servers["staying"]
    hank = unique("hank")
    first = nodes.connect(stopping, hank, name="hank@stopping")
    first.ack_gate = threading.Event()  # received, but not acknowledged before the stop
    try:
        sent = nodes.send(staying.url, [hank], "on its way at the stop")[hank]
        assert sent["status"] == "DELIVERED"
        wait_for(lambda: first.got(sent["id"]), DELIVERY_TIMEOUT, "the notification on hank's socket")
        stopping.send_signal(signal.SIGTERM)
        exit_code = stopping.wait_exit(GRACEFUL_TIMEOUT + STOP_TIMEOUT)
    finally:
        first.ack_gate.set()
    assert exit_code == 0

    again = nodes.connect(staying, hank, name="hank@staying")

    wait_for(
        lambda: again.got(sent["id"]),
        DELIVERY_TIMEOUT,
        lambda: (
            f"the unacknowledged notification (stored {nodes.database.statuses([sent['id']])})"
            " to be sent again"
        ),
    )
