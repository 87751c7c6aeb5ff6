"""Topics, categories and preferences against the real server (`python wsgi.py`), over real sockets."""

import requests

from tests.support.clients import connect
from tests.support.live_server import HTTP_TIMEOUT
from tests.support.tokens import bearer
from tests.support.waiting import wait_for

ADMIN_ROUTE = "/v1/admin/notifications"


def admin(live_server, method, path, body):
    response = requests.request(
        method,
        live_server.url + path,
        json=body,
        headers=bearer(live_server.token("ops", admin=True)),
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_topic_send_reaches_online_subscribers_live_and_the_others_on_connect(live_server, socket_client):
    admin(
        live_server, "PUT", "/v1/admin/topics/deploys/subscribers", {"userIds": ["ann", "ben", "cid", "dot"]}
    )
    requests.put(
        live_server.url + "/v1/preferences",
        json={"muted": ["digest"]},
        headers=bearer(live_server.token("dot")),
        timeout=HTTP_TIMEOUT,
    )
    ann = connect(socket_client(), live_server, "ann", ack=True)
    ben = connect(socket_client(), live_server, "ben")

    counts = admin(
        live_server, "POST", ADMIN_ROUTE, {"topic": "deploys", "category": "digest", "message": "v2"}
    )
    assert counts == {"topic": "deploys", "recipients": 4, "delivered": 2, "pending": 1, "skipped": 1}
    for client in (ann, ben):
        wait_for(lambda client=client: client.new_notifications, 10, f"the topic send on {client}")
        [live] = client.new_notifications
        assert (live["topic"], live["category"], live["message"]) == ("deploys", "digest", "v2")

    cid = connect(socket_client(), live_server, "cid")
    [[pending]] = cid.pending_batches
    assert (pending["topic"], pending["message"]) == ("deploys", "v2")
    dot = connect(socket_client(), live_server, "dot")
    assert dot.notifications() == []


def test_the_cli_sends_to_a_topic_through_the_running_server(live_server, socket_client):
    live_server.cli("topic", "add", "releases", "eve")
    eve = connect(socket_client(), live_server, "eve")
    result = live_server.cli("send-notification", "--topic", "releases", "--category", "releases", "shipped")
    assert "topic releases: recipients 1, delivered live 1, pending 0, skipped 0" in result.stdout
    wait_for(lambda: eve.new_notifications, 10, "the CLI's topic send on eve's socket")
    assert eve.new_notifications[0]["topic"] == "releases"


def test_preferences_changed_in_one_tab_reach_the_other_over_the_wire(live_server, socket_client):
    other_tab = connect(socket_client(), live_server, "fay")
    answer = requests.put(
        live_server.url + "/v1/preferences",
        json={"muted": ["marketing"]},
        headers=bearer(live_server.token("fay")),
        timeout=HTTP_TIMEOUT,
    )
    assert answer.json() == {"muted": ["marketing"]}
    wait_for(
        lambda: ("preferences_updated", {"muted": ["marketing"]}) in other_tab.events,
        10,
        "preferences_updated on the other tab",
    )
