"""Preferences and topic lists through the Flask and Socket.IO test clients."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import MutedCategory, TopicSubscription
from tests.support.inprocess import received

SUBSCRIBERS = "/v1/admin/topics/{}/subscribers"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == code and body["message"]
    return body


def stored(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


# ---- preferences ------------------------------------------------------------------


def test_preferences_start_empty_and_a_put_replaces_them_sorted(client, auth_header):
    headers = auth_header("alice")
    assert client.get("/v1/preferences", headers=headers).get_json() == {"muted": []}
    put = client.put("/v1/preferences", json={"muted": ["marketing", "digest.weekly"]}, headers=headers)
    assert put.status_code == 200 and put.get_json() == {"muted": ["digest.weekly", "marketing"]}
    client.put("/v1/preferences", json={"muted": ["security"]}, headers=headers)
    assert client.get("/v1/preferences", headers=headers).get_json() == {"muted": ["security"]}
    assert client.get("/v1/preferences", headers=auth_header("bob")).get_json() == {"muted": []}


@pytest.mark.parametrize(
    "body",
    [
        {"muted": ["Marketing"]},
        {"muted": ["-lead"]},
        {"muted": ["x" * 65]},
        {"muted": ["a", "a"]},
        {"muted": [f"c{i}" for i in range(101)]},
        {"muted": "marketing"},
        {"muted": [1]},
        {},
        {"muted": [], "extra": 1},
    ],
)
def test_bad_preferences_are_refused_and_nothing_changes(app, client, auth_header, body):
    headers = auth_header("alice")
    client.put("/v1/preferences", json={"muted": ["kept"]}, headers=headers)
    assert_error(client.put("/v1/preferences", json=body, headers=headers), 400, "validation_error")
    assert client.get("/v1/preferences", headers=headers).get_json() == {"muted": ["kept"]}
    assert stored(app, MutedCategory) == 1


def test_preferences_need_a_token_and_json(client, auth_header):
    assert client.get("/v1/preferences").status_code == 401
    body = client.put("/v1/preferences", data="muted", headers=auth_header("alice"))
    assert_error(body, 400, "bad_request")


def test_a_preferences_change_reaches_the_users_other_sockets_only(client, auth_header, socket_client):
    other_tab, someone_else = socket_client("alice"), socket_client("bob")
    received(other_tab), received(someone_else)
    client.put("/v1/preferences", json={"muted": ["marketing"]}, headers=auth_header("alice"))
    assert received(other_tab)["preferences_updated"] == [{"muted": ["marketing"]}]
    assert "preferences_updated" not in received(someone_else)


# ---- topics -------------------------------------------------------------------------


def test_adding_counts_only_users_not_in_the_topic(client, auth_header):
    admin = auth_header("ops", admin=True)
    first = client.put(
        SUBSCRIBERS.format("deploys"), json={"userIds": ["bob", "alice", "bob"]}, headers=admin
    )
    assert first.status_code == 200 and first.get_json() == {"topic": "deploys", "added": 2}
    again = client.put(SUBSCRIBERS.format("deploys"), json={"userIds": ["alice", "carol"]}, headers=admin)
    assert again.get_json() == {"topic": "deploys", "added": 1}
    removed = client.delete(SUBSCRIBERS.format("deploys"), json={"userIds": ["bob", "zed"]}, headers=admin)
    assert removed.get_json() == {"topic": "deploys", "removed": 1}
    listed = client.get(SUBSCRIBERS.format("deploys"), headers=admin).get_json()
    assert listed == {"topic": "deploys", "userIds": ["alice", "carol"]}


def test_subscribers_come_in_pages_sorted_by_user_id(client, auth_header):
    admin = auth_header("ops", admin=True)
    users = [f"user {i:02d}/é" for i in range(7)]
    client.put(SUBSCRIBERS.format("big"), json={"userIds": users[::-1]}, headers=admin)
    seen, url = [], SUBSCRIBERS.format("big") + "?limit=3"
    while url:
        page = client.get(url, headers=admin)
        assert page.status_code == 200
        seen += page.get_json()["userIds"]
        link = page.headers.get("Link")
        url = link[link.index("<") + 1 : link.index(">")].replace("http://localhost", "") if link else None
    assert seen == sorted(users)


def test_an_unknown_topic_lists_empty(client, auth_header):
    answer = client.get(SUBSCRIBERS.format("never-used"), headers=auth_header("ops", admin=True))
    assert answer.status_code == 200 and answer.get_json() == {"topic": "never-used", "userIds": []}
    assert "Link" not in answer.headers


def test_a_user_lists_and_leaves_their_topics(client, auth_header):
    admin, alice = auth_header("ops", admin=True), auth_header("alice")
    for topic in ("releases", "deploys"):
        client.put(SUBSCRIBERS.format(topic), json={"userIds": ["alice"]}, headers=admin)
    assert client.get("/v1/topics", headers=alice).get_json() == {"topics": ["deploys", "releases"]}
    assert client.delete("/v1/topics/deploys", headers=alice).status_code == 204
    assert client.delete("/v1/topics/deploys", headers=alice).status_code == 204  # not in it: same
    assert client.get("/v1/topics", headers=alice).get_json() == {"topics": ["releases"]}


@pytest.mark.parametrize("topic", ["Deploys", "-x", "a" * 65, "d%20x", "dé"])
def test_bad_topic_names_are_400_and_store_nothing(app, client, auth_header, topic):
    admin = auth_header("ops", admin=True)
    answer = client.put(SUBSCRIBERS.format(topic), json={"userIds": ["alice"]}, headers=admin)
    assert_error(answer, 400, "bad_request")
    assert_error(client.get(SUBSCRIBERS.format(topic), headers=admin), 400, "bad_request")
    assert_error(client.delete(f"/v1/topics/{topic}", headers=auth_header("alice")), 400, "bad_request")
    assert stored(app, TopicSubscription) == 0


@pytest.mark.parametrize(
    "body", [{"userIds": []}, {"userIds": "alice"}, {"userIds": [""]}, {"userIds": ["a\x00"]}, {}, {"x": 1}]
)
def test_bad_subscriber_bodies_are_400_and_store_nothing(app, client, auth_header, body):
    answer = client.put(SUBSCRIBERS.format("deploys"), json=body, headers=auth_header("ops", admin=True))
    assert_error(answer, 400, "validation_error")
    assert stored(app, TopicSubscription) == 0


def test_topic_lists_are_the_admins(client, auth_header):
    answer = client.put(
        SUBSCRIBERS.format("deploys"), json={"userIds": ["mallory"]}, headers=auth_header("mallory")
    )
    assert_error(answer, 403, "forbidden")
    assert client.get(SUBSCRIBERS.format("deploys")).status_code == 401


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x"])
def test_bad_subscriber_pages_are_400(client, auth_header, query):
    answer = client.get(SUBSCRIBERS.format("deploys") + "?" + query, headers=auth_header("ops", admin=True))
    assert_error(answer, 400, "validation_error")


def test_a_list_with_both_item_errors_and_too_many_items_gets_a_400(client, auth_header):
    body = {"muted": ["0", 0] * 51}
    answer = assert_error(
        client.put("/v1/preferences", json=body, headers=auth_header("alice")), 400, "validation_error"
    )
    assert "1" in answer["details"]["muted"]
