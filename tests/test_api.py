"""REST API through the Flask test client: every route and its errors."""

import time

import jwt as pyjwt
import pytest
from sqlalchemy import func, select

from app import records
from app.extensions import db
from app.models import Notification
from app.services import inbox
from tests.support.inprocess import received
from tests.support.wire import SENT_WIRE_KEYS, WIRE_KEYS


def count_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Notification))


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_admin_post_creates_one_object_per_user(admin_post, socket_client):
    socket_client("alice")
    response = admin_post(["alice", "bob", "alice"], "Deploy finished")
    assert response.status_code == 201
    notes = response.get_json()["notifications"]
    assert {n["userId"]: n["status"] for n in notes} == {"alice": "DELIVERED", "bob": "PENDING"}
    for note in notes:
        assert set(note) == SENT_WIRE_KEYS
        assert note["message"] == "Deploy finished"
        assert note["createdAt"].endswith("Z") and note["readAt"] is None


def test_list_returns_only_the_callers_rows_newest_first(client, admin_post, auth_header):
    admin_post(["alice"], "first")
    admin_post(["alice", "bob"], "second")
    response = client.get("/v1/notifications", headers=auth_header("alice"))
    assert response.status_code == 200
    assert [n["message"] for n in response.get_json()] == ["second", "first"]
    assert all(n["userId"] == "alice" for n in response.get_json())
    assert "Link" not in response.headers


def test_list_pages_with_a_link_header(client, admin_post, auth_header):
    for i in range(5):
        admin_post(["alice"], f"m{i}")
    headers = auth_header("alice")
    seen, url = [], "/v1/notifications?limit=2"
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200
        seen += [n["message"] for n in response.get_json()]
        link = response.headers.get("Link")
        url = link[link.index("<") + 1 : link.index(">")] if link else None
        if link:
            assert link.endswith('rel="next"')
    assert seen == ["m4", "m3", "m2", "m1", "m0"]


def test_paging_through_rows_created_on_a_whole_second(client, admin_post, auth_header, monkeypatch):
    """Rows sharing a timestamp with no fraction of a second page like any others."""
    from datetime import UTC, datetime

    monkeypatch.setattr(records, "utcnow", lambda: datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC))
    ids = {admin_post(["alice"], f"m{i}").get_json()["notifications"][0]["id"] for i in range(3)}
    seen, url = [], "/v1/notifications?limit=1"
    while url:
        response = client.get(url, headers=auth_header("alice"))
        assert response.status_code == 200
        seen += [n["id"] for n in response.get_json()]
        link = response.headers.get("Link")
        url = link[link.index("<") + 1 : link.index(">")] if link else None
        assert len(seen) <= 3, f"paging repeats rows: {seen}"
    assert sorted(seen) == sorted(ids)
    listed = client.get("/v1/notifications", headers=auth_header("alice")).get_json()
    assert {n["createdAt"] for n in listed} == {"2026-11-29T09:00:00.000000Z"}


def test_list_filters_by_status(client, admin_post, auth_header):
    ids = [admin_post(["alice"], f"m{i}").get_json()["notifications"][0]["id"] for i in range(3)]
    headers = auth_header("alice")
    client.put(f"/v1/notifications/{ids[0]}/read", headers=headers)
    for status in ("READ", "read"):
        response = client.get(f"/v1/notifications?status={status}", headers=headers)
        assert [n["id"] for n in response.get_json()] == [ids[0]]
    pending = client.get("/v1/notifications?status=PENDING", headers=headers).get_json()
    assert {n["id"] for n in pending} == set(ids[1:])


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=201", "limit=abc", "status=LOST", "cursor=%%%", "cursor=a.b", "cursor=V"]
)
def test_list_rejects_bad_query(client, auth_header, query):
    response = client.get(f"/v1/notifications?{query}", headers=auth_header("alice"))
    assert_error(response, 400, "validation_error")


def test_list_accepts_every_cursor_of_the_documented_form(client, admin_post, auth_header):
    admin_post(["alice"])
    headers = auth_header("alice")
    before_everything = client.get(f"/v1/notifications?cursor=0-{'0' * 32}", headers=headers)
    assert before_everything.status_code == 200 and before_everything.get_json() == []
    after_everything = client.get(f"/v1/notifications?cursor={'9' * 17}-{'f' * 32}", headers=headers)
    assert after_everything.status_code == 200 and len(after_everything.get_json()) == 1


def test_mark_read_returns_read_and_repeating_keeps_read_at(client, admin_post, auth_header):
    note = admin_post(["alice"]).get_json()["notifications"][0]
    headers = auth_header("alice")
    first = client.put(f"/v1/notifications/{note['id']}/read", headers=headers)
    assert first.status_code == 200
    assert first.get_json()["status"] == "READ" and first.get_json()["readAt"]
    time.sleep(0.01)
    again = client.put(f"/v1/notifications/{note['id']}/read", headers=headers)
    assert again.get_json()["readAt"] == first.get_json()["readAt"]


def test_delete_then_it_is_gone(client, admin_post, auth_header, app):
    note = admin_post(["alice"]).get_json()["notifications"][0]
    headers = auth_header("alice")
    response = client.delete(f"/v1/notifications/{note['id']}", headers=headers)
    assert response.status_code == 204 and response.data == b""
    assert client.get("/v1/notifications", headers=headers).get_json() == []
    assert_error(client.delete(f"/v1/notifications/{note['id']}", headers=headers), 404, "not_found")
    assert count_rows(app) == 0


@pytest.mark.parametrize("method", ["put", "delete"])
def test_someone_elses_or_unknown_or_malformed_id_is_404(client, admin_post, auth_header, app, method):
    note = admin_post(["alice"]).get_json()["notifications"][0]
    suffix = "/read" if method == "put" else ""
    for user, note_id in [
        ("bob", note["id"]),
        ("alice", "00000000-0000-4000-8000-000000000000"),
        ("alice", "nope"),
    ]:
        response = getattr(client, method)(f"/v1/notifications/{note_id}{suffix}", headers=auth_header(user))
        body = assert_error(response, 404, "not_found")
        assert "alice" not in str(body)
    assert client.get("/v1/notifications", headers=auth_header("alice")).get_json()[0]["status"] == "PENDING"


def test_non_admin_gets_403_and_nothing_is_stored(client, auth_header, app):
    response = client.post(
        "/v1/admin/notifications", json={"userIds": ["x"], "message": "m"}, headers=auth_header("alice")
    )
    assert_error(response, 403, "forbidden")
    assert count_rows(app) == 0


BAD_BODIES = [
    {"message": "m"},
    {"userIds": ["a"]},
    {"userIds": [], "message": "m"},
    {"userIds": "alice", "message": "m"},
    {"userIds": ["a", 1], "message": "m"},
    {"userIds": ["a", ""], "message": "m"},
    {"userIds": ["  "], "message": "m"},
    {"userIds": ["x" * 256], "message": "m"},
    {"userIds": ["a"], "message": ""},
    {"userIds": ["a"], "message": "   "},
    {"userIds": ["a"], "message": 5},
    {"userIds": ["a"], "message": None},
    {"userIds": ["a"], "message": "x" * 2001},
    {"userIds": ["a"], "message": "m", "extra": True},
    # NUL: PostgreSQL cannot store it in text (a 500 at the INSERT if it got that far).
    {"userIds": ["a\u0000b"], "message": "m"},
    {"userIds": ["\u0000"], "message": "m"},
    {"userIds": ["a"], "message": "before\u0000after"},
    ["a"],
    "text",
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_bodies_get_400_with_details_and_store_nothing(client, auth_header, app, body):
    response = client.post("/v1/admin/notifications", json=body, headers=auth_header("root", admin=True))
    result = assert_error(response, 400, "validation_error")
    assert result["details"]
    assert count_rows(app) == 0


def test_too_many_recipients_is_400(client, auth_header, app):
    app.config["MAX_RECIPIENTS"] = 3
    body = {"userIds": ["a", "b", "c", "d"], "message": "m"}
    response = client.post("/v1/admin/notifications", json=body, headers=auth_header("root", admin=True))
    assert "userIds" in assert_error(response, 400, "validation_error")["details"]
    body["userIds"] = ["a", "b", "c", "a"]
    ok = client.post("/v1/admin/notifications", json=body, headers=auth_header("root", admin=True))
    assert ok.status_code == 201
    assert count_rows(app) == 3


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"userIds": ["a"], "message": "m"}', "text/plain"),
        ("", "application/json"),
    ],
)
def test_malformed_json_or_wrong_content_type_is_400(client, auth_header, app, data, content_type):
    response = client.post(
        "/v1/admin/notifications",
        data=data,
        content_type=content_type,
        headers=auth_header("root", admin=True),
    )
    assert_error(response, 400, "bad_request")
    assert count_rows(app) == 0


def test_oversize_body_is_413(client, auth_header, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    body = {"userIds": ["a"], "message": "x" * 2000}
    response = client.post("/v1/admin/notifications", json=body, headers=auth_header("root", admin=True))
    assert_error(response, 413, "payload_too_large")
    assert count_rows(app) == 0


def forged_tokens(secret: str) -> dict:
    now = int(time.time())
    claims = {"sub": "alice", "exp": now + 600, "role": "admin"}
    return {
        "garbage": "not.a.token",
        "expired": pyjwt.encode({**claims, "exp": now - 10}, secret, algorithm="HS256"),
        "wrong key": pyjwt.encode(claims, "another-secret-another-secret-xx", algorithm="HS256"),
        "alg none": pyjwt.encode(claims, None, algorithm="none"),
        "no exp": pyjwt.encode({"sub": "alice", "role": "admin"}, secret, algorithm="HS256"),
        "no sub": pyjwt.encode({"exp": now + 600, "role": "admin"}, secret, algorithm="HS256"),
        "empty sub": pyjwt.encode({**claims, "sub": ""}, secret, algorithm="HS256"),
    }


@pytest.mark.parametrize("kind", list(forged_tokens("k" * 32)))
def test_bad_tokens_get_401_on_every_route(client, app, kind):
    bad = forged_tokens(app.config["JWT_SECRET_KEY"])[kind]
    headers = {"Authorization": f"Bearer {bad}"}
    assert_error(client.get("/v1/notifications", headers=headers), 401, "unauthorized")
    assert_error(client.put("/v1/notifications/x/read", headers=headers), 401, "unauthorized")
    assert_error(client.delete("/v1/notifications/x", headers=headers), 401, "unauthorized")
    response = client.post(
        "/v1/admin/notifications", json={"userIds": ["a"], "message": "m"}, headers=headers
    )
    assert_error(response, 401, "unauthorized")
    assert count_rows(app) == 0


def test_a_token_verified_before_is_refused_once_it_expires(client, app):
    token = pyjwt.encode({"sub": "alice", "exp": int(time.time()) + 2}, app.config["JWT_SECRET_KEY"], "HS256")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/notifications", headers=headers).status_code == 200
    assert client.get("/v1/notifications", headers=headers).status_code == 200
    time.sleep(max(0.0, pyjwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.05)
    assert_error(client.get("/v1/notifications", headers=headers), 401, "unauthorized")


def test_a_token_is_verified_once_while_it_is_valid(client, app, auth_header, monkeypatch):
    from flask_jwt_extended import jwt_manager

    decoded = []
    real = jwt_manager._decode_jwt
    monkeypatch.setattr(jwt_manager, "_decode_jwt", lambda **kw: decoded.append(1) or real(**kw))
    headers = auth_header("alice")
    for _ in range(3):
        assert client.get("/v1/notifications", headers=headers).status_code == 200
    assert len(decoded) == 1
    # The same user's token signed with another key is a different token: verified, refused.
    forged = forged_tokens(app.config["JWT_SECRET_KEY"])["wrong key"]
    response = client.get("/v1/notifications", headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "unauthorized")


def test_a_new_token_is_decoded_once_and_a_refused_one_keeps_its_answer(client, app, monkeypatch):
    decodes = []
    real = pyjwt.decode
    monkeypatch.setattr(pyjwt, "decode", lambda *a, **kw: decodes.append(1) or real(*a, **kw))
    claims = {"sub": "alice", "exp": int(time.time()) + 60}
    token = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], "HS256")
    assert client.get("/v1/notifications", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert len(decodes) == 1
    expired = forged_tokens(app.config["JWT_SECRET_KEY"])["expired"]
    response = client.get("/v1/notifications", headers={"Authorization": f"Bearer {expired}"})
    assert_error(response, 401, "unauthorized")
    assert response.get_json()["message"] == "The token has expired."


def test_a_tokens_header_is_parsed_once_and_each_request_sees_it(client, app, monkeypatch):
    from flask_jwt_extended import get_jwt_header, verify_jwt_in_request

    parsed = []
    real = pyjwt.get_unverified_header
    monkeypatch.setattr(pyjwt, "get_unverified_header", lambda t: parsed.append(1) or real(t))
    claims = {"sub": "alice", "exp": int(time.time()) + 60}
    token = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], "HS256", headers={"kid": "k1"})
    for _ in range(3):
        with app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
            verify_jwt_in_request()
            header = get_jwt_header()
            assert header == {"alg": "HS256", "typ": "JWT", "kid": "k1"}
            header["kid"] = "changed by a caller"
    assert len(parsed) == 1


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Token x"])
def test_missing_or_malformed_authorization_header_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    assert_error(client.get("/v1/notifications", headers=headers), 401, "unauthorized")


def test_external_token_with_only_sub_and_exp_works(client, app, admin_post):
    admin_post(["ext-user"], "hello")
    bare = pyjwt.encode(
        {"sub": "ext-user", "exp": int(time.time()) + 60}, app.config["JWT_SECRET_KEY"], algorithm="HS256"
    )
    response = client.get("/v1/notifications", headers={"Authorization": f"Bearer {bare}"})
    assert response.status_code == 200
    assert [n["message"] for n in response.get_json()] == ["hello"]


def test_unknown_route_and_wrong_method_are_json(client):
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.patch("/v1/notifications"), 405, "method_not_allowed")


def test_unexpected_error_is_a_json_500_without_internals(client, app, auth_header, monkeypatch):

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(inbox, "list_notifications", broken)
    response = client.get("/v1/notifications", headers=auth_header("alice"))
    body = assert_error(response, 500, "internal_error")
    assert "secret internal detail" not in body["message"]


def test_healthz_and_readyz_report_the_database(client, app, monkeypatch):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ok", "checks": {"database": "ok"}}
    from sqlalchemy.exc import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("database is down"))

    with app.app_context():
        monkeypatch.setattr(db.session, "execute", down)
        assert_error(client.get("/healthz"), 503, "unavailable")  # as the wire contract says
        body = assert_error(client.get("/readyz"), 503, "unavailable")
        assert set(body["details"]) == {"database"}


def test_openapi_document_lists_every_route_with_schemas(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/v1/notifications",
        "/v1/notifications/{notification_id}/read",
        "/v1/notifications/{notification_id}",
        "/v1/notifications/unread-count",
        "/v1/notifications/read-all",
        "/v1/admin/notifications",
        "/v1/preferences",
        "/v1/topics",
        "/v1/topics/{topic}",
        "/v1/admin/topics/{topic}/subscribers",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
    assert set(spec["paths"]["/v1/notifications/{notification_id}"]) == {"delete"}
    notification = spec["components"]["schemas"]["Notification"]["properties"]
    assert set(notification) == WIRE_KEYS
    body = spec["paths"]["/v1/admin/notifications"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert "$ref" in body
    create = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert set(create["required"]) == {"message"}  # and exactly one of userIds and topic
    assert {"userIds", "topic", "category", "data"} <= set(create["properties"])


def test_client_page_and_bundle_are_served(client, app):
    page = client.get("/client/")
    assert page.status_code == 200 and b"<html" in page.data.lower()
    assert client.get("/client/index.html").status_code == 200
    assert client.get("/client/client.js").status_code == 200
    assert client.get("/client").status_code in (301, 308)
    assert_error(client.get("/client/package.json"), 404, "not_found")
    assert_error(client.get("/client/../config.py"), 404, "not_found")


def test_socket_emits_only_reach_the_target(admin_post, socket_client):
    alice, bob = socket_client("alice"), socket_client("bob")
    admin_post(["alice"], "for alice only")
    assert [n["message"] for n in received(alice)["new_notification"]] == ["for alice only"]
    assert received(bob) == {"unread_count": [{"count": 0}]}  # what bob got on connect, nothing since
