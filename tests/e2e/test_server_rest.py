"""The REST API over the real server: list and page, mark read, delete, someone else's rows."""

import uuid

import requests

from tests.support.live_server import HTTP_TIMEOUT
from tests.support.tokens import bearer
from tests.support.wire import parse_time


def test_rest_list_mark_read_and_delete(live_server):
    url = live_server.url + "/v1"
    erin = bearer(live_server.token("erin"))
    sent = [live_server.send(["erin"], f"message {i}")[0] for i in range(3)]
    [franks] = live_server.send(["frank"], "for frank")

    listed = requests.get(url + "/notifications", headers=erin, timeout=HTTP_TIMEOUT)
    assert listed.status_code == 200
    assert [n["id"] for n in listed.json()] == [n["id"] for n in reversed(sent)]

    page = requests.get(url + "/notifications?limit=2", headers=erin, timeout=HTTP_TIMEOUT)
    assert page.status_code == 200
    assert [n["id"] for n in page.json()] == [sent[2]["id"], sent[1]["id"]]
    assert "next" in page.links, page.headers
    rest = requests.get(page.links["next"]["url"], headers=erin, timeout=HTTP_TIMEOUT)
    assert [n["id"] for n in rest.json()] == [sent[0]["id"]]
    assert "next" not in rest.links

    assert requests.get(url + "/notifications", timeout=HTTP_TIMEOUT).status_code == 401
    bad_limit = requests.get(url + "/notifications?limit=0", headers=erin, timeout=HTTP_TIMEOUT)
    assert bad_limit.status_code == 400
    assert bad_limit.json()["error"]

    target = sent[0]["id"]
    read = requests.put(f"{url}/notifications/{target}/read", headers=erin, timeout=HTTP_TIMEOUT)
    assert read.status_code == 200
    assert read.json()["status"] == "READ"
    read_at = parse_time(read.json()["readAt"])
    again = requests.put(f"{url}/notifications/{target}/read", headers=erin, timeout=HTTP_TIMEOUT)
    assert again.status_code == 200
    assert parse_time(again.json()["readAt"]) == read_at
    assert live_server.statuses([target]) == {target: "READ"}

    for foreign in (franks["id"], "not-a-uuid", str(uuid.uuid4())):
        for method in (requests.put, requests.delete):
            path = f"{url}/notifications/{foreign}" + ("/read" if method is requests.put else "")
            response = method(path, headers=erin, timeout=HTTP_TIMEOUT)
            assert response.status_code == 404, (method.__name__, foreign, response.text)
            assert response.json()["error"] == "not_found"
    assert live_server.statuses([franks["id"]]) == {franks["id"]: "PENDING"}

    deleted = requests.delete(f"{url}/notifications/{target}", headers=erin, timeout=HTTP_TIMEOUT)
    assert deleted.status_code == 204
    gone = requests.delete(f"{url}/notifications/{target}", headers=erin, timeout=HTTP_TIMEOUT)
    assert gone.status_code == 404
    listed = requests.get(url + "/notifications", headers=erin, timeout=HTTP_TIMEOUT)
    assert target not in [n["id"] for n in listed.json()]

    not_admin = requests.post(
        url + "/admin/notifications",
        json={"userIds": ["erin"], "message": "self-service"},
        headers=erin,
        timeout=HTTP_TIMEOUT,
    )
    assert not_admin.status_code == 403
    assert len(live_server.rows("SELECT id FROM notifications WHERE user_id = 'erin'")) == 2
