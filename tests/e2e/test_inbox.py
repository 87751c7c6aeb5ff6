"""The inbox over the real server: devices in step, unread count, idempotent sends, several processes."""

import threading

import pytest
import requests

from tests.support.clients import connect
from tests.support.cluster import DELIVERY_TIMEOUT, unique
from tests.support.tokens import bearer
from tests.support.waiting import wait_for
from tests.support.wire import ADMIN_ROUTE

HTTP_TIMEOUT = 30


def events_named(client, name: str) -> list:
    return [payload for event, payload in list(client.events) if event == name]


def last_count(client) -> int | None:
    counts = events_named(client, "unread_count")
    return counts[-1]["count"] if counts else None


def test_two_devices_stay_in_step_through_rest_changes(live_server, socket_client):
    phone, laptop = socket_client(), socket_client()
    connect(phone, live_server, "dana")
    connect(laptop, live_server, "dana", via="auth", ack=True)
    first, second = live_server.send(["dana"], "one")[0], live_server.send(["dana"], "two")[0]
    for device in (phone, laptop):
        wait_for(lambda d=device: last_count(d) == 2, message=f"count 2 on {device}")

    user = bearer(live_server.token("dana"))
    requests.put(f"{live_server.url}/v1/notifications/{first['id']}/read", headers=user, timeout=HTTP_TIMEOUT)
    requests.delete(f"{live_server.url}/v1/notifications/{second['id']}", headers=user, timeout=HTTP_TIMEOUT)
    for device in (phone, laptop):
        wait_for(lambda d=device: events_named(d, "notification_deleted"), message=f"the delete on {device}")
        [updated] = events_named(device, "notification_updated")
        assert updated["id"] == first["id"] and updated["status"] == "READ"
        assert events_named(device, "notification_deleted") == [{"id": second["id"]}]
        wait_for(lambda d=device: last_count(d) == 0, message=f"count 0 on {device}")

    live_server.send(["dana"], "three")
    url = f"{live_server.url}/v1/notifications/read-all"
    read_all = requests.post(url, headers=user, timeout=HTTP_TIMEOUT)
    assert read_all.status_code == 200 and read_all.json()["updated"] == 1
    expected = [{"readAt": read_all.json()["readAt"], "count": 1}]
    for device in (phone, laptop):
        wait_for(lambda d=device: events_named(d, "notifications_read_all"), message=f"read-all on {device}")
        assert events_named(device, "notifications_read_all") == expected
        wait_for(lambda d=device: last_count(d) == 0, message=f"count 0 on {device}")


def test_concurrent_retries_with_one_key_store_one_set(live_server):
    headers = {**bearer(live_server.token("cron", admin=True)), "Idempotency-Key": "nightly-2026-12-01"}
    body = {
        "userIds": ["erin", "fred"],
        "message": "nightly report",
        "data": {"url": "https://example.com/r"},
    }
    answers: list[requests.Response] = []

    def post():
        url = live_server.url + ADMIN_ROUTE
        answer = requests.post(url, json=body, headers=headers, timeout=HTTP_TIMEOUT)
        answers.append(answer)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HTTP_TIMEOUT * 2)
    assert live_server.rows("SELECT count(*) FROM notifications") == [(2,)]
    ok = [a for a in answers if a.status_code == 201]
    assert ok and all(a.status_code in (201, 409) for a in answers), [a.status_code for a in answers]
    assert len({tuple(n["id"] for n in a.json()["notifications"]) for a in ok}) == 1
    assert [a.headers.get("Idempotent-Replayed") for a in ok].count(None) == 1
    assert ok[0].json()["notifications"][0]["data"] == body["data"]


@pytest.mark.cluster
def test_a_read_through_one_process_reaches_the_users_socket_on_another(cluster):
    a, b = cluster.servers["A"], cluster.servers["B"]
    user = unique("gail")
    on_a = cluster.connect(a, user)
    sent = cluster.send(b.url, [user], "read me elsewhere")[user]
    wait_for(lambda: last_count(on_a) == 1, DELIVERY_TIMEOUT, "the count of 1 on process A")
    headers = bearer(cluster.token(user))
    read = requests.put(f"{b.url}/v1/notifications/{sent['id']}/read", headers=headers, timeout=HTTP_TIMEOUT)
    assert read.status_code == 200
    wait_for(lambda: events_named(on_a, "notification_updated"), DELIVERY_TIMEOUT, "the read on process A")
    assert events_named(on_a, "notification_updated")[0]["status"] == "READ"
    wait_for(lambda: last_count(on_a) == 0, DELIVERY_TIMEOUT, "the count of 0 on process A")
    cluster.disconnect_clients()
