"""A topic send on one process reaches subscribers connected to the other (PostgreSQL + Redis)."""

import pytest
import requests

from tests.support.cluster import DELIVERY_TIMEOUT, HTTP_TIMEOUT, unique
from tests.support.tokens import bearer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_a_topic_send_on_one_process_reaches_subscribers_on_both(nodes):
    a, b = nodes.servers["A"], nodes.servers["B"]
    topic = unique("launch").lower()
    users = [unique(name) for name in ("amy", "bo", "cy")]
    admin = bearer(nodes.token("ops", admin=True))
    added = requests.put(
        f"{b.url}/v1/admin/topics/{topic}/subscribers",
        json={"userIds": users},
        headers=admin,
        timeout=HTTP_TIMEOUT,
    )
    assert added.json() == {"topic": topic, "added": 3}
    on_a = nodes.connect(a, users[0], name="amy@A")
    on_b = nodes.connect(b, users[1], name="bo@B", ack=False)

    answer = requests.post(
        f"{a.url}/v1/admin/notifications",
        json={"topic": topic, "message": "go"},
        headers=admin,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"topic": topic, "recipients": 3, "delivered": 2, "pending": 1, "skipped": 0}
    for client in (on_a, on_b):
        wait_for(
            lambda client=client: client.new_notifications,
            DELIVERY_TIMEOUT,
            f"the topic send on {client.name}",
        )
        assert client.new_notifications[0]["topic"] == topic
    late = nodes.connect(b, users[2], name="cy@B")
    wait_for(lambda: late.pending_ids(), DELIVERY_TIMEOUT, "the pending topic send on cy@B")
