"""Two processes sharing PostgreSQL and Redis, as an operator sees them: one /metrics each, and /readyz
following Redis and the message-queue subscription while /healthz keeps answering."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import DELIVERY_TIMEOUT, unique
from tests.support.live_server import HTTP_TIMEOUT
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cluster

READY_TIMEOUT = 30  # seconds for a process to be ready again once Redis is back (it retries every second)


def metric(server, name: str, **labels) -> float:
    """One sample of the process's own /metrics (0 when it has none yet)."""
    response = requests.get(server.url + "/metrics", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "notifications_" + name and sample.labels == labels:
                return sample.value
    return 0.0


def test_each_process_exposes_its_own_metrics(nodes):
    a, b = nodes.servers["A"], nodes.servers["B"]
    user = unique("alice")
    sent_on_a, acknowledged_on_a = metric(a, "sent_total", kind="live"), metric(a, "acknowledged_total")
    created_on_a, created_on_b = (metric(s, "created_total", status="DELIVERED") for s in (a, b))
    client = nodes.connect(a, user)

    note = nodes.send(b.url, [user], "created on B, sent by A")[user]
    wait_for(lambda: client.got(note["id"]), DELIVERY_TIMEOUT, "the notification on A's socket")

    assert metric(a, "sockets_connected") == 1 and metric(b, "sockets_connected") == 0
    assert metric(b, "created_total", status="DELIVERED") - created_on_b == 1
    assert metric(a, "created_total", status="DELIVERED") == created_on_a
    assert metric(a, "sent_total", kind="live") - sent_on_a == 1
    wait_for(
        lambda: metric(a, "acknowledged_total") - acknowledged_on_a == 1,
        DELIVERY_TIMEOUT,
        "A to count the acknowledgement",
    )


def test_readyz_follows_redis_while_healthz_keeps_answering(nodes):
    a = nodes.servers["A"]
    ready = requests.get(a.url + "/readyz", timeout=HTTP_TIMEOUT)
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "subscription": "ok"}

    nodes.redis.shutdown()

    def not_ready() -> dict:
        response = requests.get(a.url + "/readyz", timeout=HTTP_TIMEOUT)
        return response.json() if response.status_code == 503 else {}

    down = wait_for(not_ready, message="/readyz to answer 503 with Redis down")
    assert down["error"] == "unavailable"
    assert set(down["details"]) == {"redis", "subscription"}
    assert requests.get(a.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200

    nodes.redis.start()
    wait_for(
        lambda: requests.get(a.url + "/readyz", timeout=HTTP_TIMEOUT).status_code == 200,
        READY_TIMEOUT,
        "/readyz to answer 200 again once Redis is back",
    )
