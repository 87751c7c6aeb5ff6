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


# ---- sending by category and to topics ------------------------------------------------------

CREATE = "/v1/admin/notifications"


def counts(topic: str, delivered: int = 0, pending: int = 0, skipped: int = 0) -> dict:
    """A topic send's answer."""
    total = delivered + pending + skipped
    return {
        "topic": topic,
        "recipients": total,
        "delivered": delivered,
        "pending": pending,
        "skipped": skipped,
    }


def create(client, auth_header, body, **headers):
    return client.post(CREATE, json=body, headers={**auth_header("ops", admin=True), **headers})


def test_a_send_names_its_category_and_skips_who_muted_it(app, client, auth_header):
    client.put("/v1/preferences", json={"muted": ["digest"]}, headers=auth_header("bob"))
    answer = create(
        client, auth_header, {"userIds": ["alice", "bob"], "category": "digest", "message": "weekly"}
    )
    assert answer.status_code == 201, answer.get_data(as_text=True)
    body = answer.get_json()
    assert [(n["userId"], n["category"], n["topic"]) for n in body["notifications"]] == [
        ("alice", "digest", None)
    ]
    assert body["skipped"] == ["bob"]
    assert client.get("/v1/notifications", headers=auth_header("bob")).get_json() == []
    plain = create(client, auth_header, {"userIds": ["bob"], "message": "no category"}).get_json()
    assert plain["notifications"][0]["category"] == "general" and plain["skipped"] == []


def test_muting_leaves_what_is_stored(client, auth_header):
    create(client, auth_header, {"userIds": ["alice"], "category": "digest", "message": "before"})
    client.put("/v1/preferences", json={"muted": ["digest"]}, headers=auth_header("alice"))
    listed = client.get("/v1/notifications", headers=auth_header("alice")).get_json()
    assert [n["message"] for n in listed] == ["before"]


def test_the_list_filters_by_category_with_its_cursor(client, auth_header):
    for i in range(3):
        create(client, auth_header, {"userIds": ["alice"], "category": "deploys", "message": f"d{i}"})
        create(client, auth_header, {"userIds": ["alice"], "message": f"g{i}"})
    headers = auth_header("alice")
    first = client.get("/v1/notifications?category=deploys&limit=2", headers=headers)
    assert [n["message"] for n in first.get_json()] == ["d2", "d1"]
    link = first.headers["Link"]
    assert "category=deploys" in link
    rest = client.get(link[link.index("/v1/") : link.index(">")], headers=headers).get_json()
    assert [n["message"] for n in rest] == ["d0"]
    assert client.get("/v1/notifications?category=Bad", headers=headers).status_code == 400


def test_a_topic_send_reaches_its_users_at_that_moment_and_answers_counts(
    app, client, auth_header, socket_client
):
    admin = auth_header("ops", admin=True)
    client.put(SUBSCRIBERS.format("deploys"), json={"userIds": ["alice", "bob", "carol"]}, headers=admin)
    client.put("/v1/preferences", json={"muted": ["digest"]}, headers=auth_header("carol"))
    alice = socket_client("alice")
    received(alice)
    answer = create(client, auth_header, {"topic": "deploys", "category": "digest", "message": "out"})
    assert answer.status_code == 201
    assert answer.get_json() == counts("deploys", delivered=1, pending=1, skipped=1)
    [live] = received(alice)["new_notification"]
    assert (live["message"], live["topic"], live["category"]) == ("out", "deploys", "digest")
    bob = client.get("/v1/notifications", headers=auth_header("bob")).get_json()
    assert [(n["status"], n["topic"]) for n in bob] == [("PENDING", "deploys")]
    client.put(SUBSCRIBERS.format("deploys"), json={"userIds": ["dave"]}, headers=admin)
    assert client.get("/v1/notifications", headers=auth_header("dave")).get_json() == []


def test_a_topic_send_goes_in_batches(app, client, auth_header):
    app.extensions["fanout"].batch = 2
    users = [f"u{i}" for i in range(5)]
    client.put(SUBSCRIBERS.format("big"), json={"userIds": users}, headers=auth_header("ops", admin=True))
    answer = create(client, auth_header, {"topic": "big", "message": "hello"}).get_json()
    assert answer == counts("big", pending=5)
    for user in users:
        assert len(client.get("/v1/notifications", headers=auth_header(user)).get_json()) == 1


def test_an_empty_or_unknown_topic_answers_zeros(client, auth_header):
    answer = create(client, auth_header, {"topic": "never-used", "message": "hello"})
    assert answer.status_code == 201
    assert answer.get_json() == counts("never-used")


def test_a_topic_send_is_idempotent(app, client, auth_header):
    admin = auth_header("ops", admin=True)
    client.put(SUBSCRIBERS.format("deploys"), json={"userIds": ["alice", "bob"]}, headers=admin)
    body = {"topic": "deploys", "message": "once"}
    first = create(client, auth_header, body, **{"Idempotency-Key": "k1"})
    again = create(client, auth_header, body, **{"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == first.get_json()
    assert len(client.get("/v1/notifications", headers=auth_header("alice")).get_json()) == 1
    other = create(client, auth_header, {"topic": "deploys", "message": "other"}, **{"Idempotency-Key": "k1"})
    assert_error(other, 422, "idempotency_key_reused")


@pytest.mark.parametrize(
    "body",
    [
        {"message": "neither"},
        {"userIds": ["alice"], "topic": "deploys", "message": "both"},
        {"topic": "Deploys", "message": "bad topic"},
        {"topic": "deploys", "category": "", "message": "bad category"},
        {"userIds": ["alice"], "category": "a b", "message": "bad category"},
        {"userIds": ["alice"], "message": "x", "channel": "sms"},
    ],
)
def test_bad_sends_are_400_and_store_nothing(app, client, auth_header, body):
    client.put(
        SUBSCRIBERS.format("deploys"), json={"userIds": ["alice"]}, headers=auth_header("ops", admin=True)
    )
    assert_error(create(client, auth_header, body), 400, "validation_error")
    assert client.get("/v1/notifications", headers=auth_header("alice")).get_json() == []
