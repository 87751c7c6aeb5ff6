"""Socket.IO through the Flask-SocketIO test client: auth, rooms, pending delivery."""

import time

import pytest
from sqlalchemy import text

from app.extensions import db
from app.limits import BREACH_LOG
from tests.support.inprocess import received, stored_statuses
from tests.support.tokens import forged_tokens, mint_token, token_claims


@pytest.mark.parametrize("via", ["header", "auth"])
def test_connected_user_gets_new_notification_live(app, socket_client, admin_post, via):
    sc = socket_client("alice", via=via)
    assert sc.is_connected()
    note = admin_post(["alice"], "live!").get_json()["notifications"][0]
    got = received(sc)
    assert got["new_notification"] == [{k: v for k, v in note.items() if k != "createdBy"}]
    assert got["unread_count"] == [{"count": 0}, {"count": 1}]  # after connect, after the new one
    assert note["status"] == "DELIVERED"
    assert stored_statuses(app, "alice") == {note["id"]: "DELIVERED"}


def test_offline_user_gets_pending_on_connect_oldest_first(app, socket_client, admin_post):
    ids = [admin_post(["bob"], f"m{i}").get_json()["notifications"][0]["id"] for i in range(3)]
    assert set(stored_statuses(app, "bob").values()) == {"PENDING"}
    sc = socket_client("bob", via="auth")
    pending = received(sc)["pending_notifications"]
    assert len(pending) == 1
    assert [n["id"] for n in pending[0]] == ids
    assert all(n["status"] == "DELIVERED" and n["deliveredAt"] for n in pending[0])
    assert set(stored_statuses(app, "bob").values()) == {"DELIVERED"}


def test_no_pending_event_when_nothing_is_pending(socket_client, admin_post):
    admin_post(["bob"], "once")
    first = socket_client("bob")
    assert "pending_notifications" in received(first)
    second = socket_client("bob")
    assert received(second) == {"unread_count": [{"count": 1}]}


def test_read_notifications_are_not_resent_on_connect(client, socket_client, admin_post, auth_header):
    note = admin_post(["bob"]).get_json()["notifications"][0]
    client.put(f"/v1/notifications/{note['id']}/read", headers=auth_header("bob"))
    assert received(socket_client("bob")) == {"unread_count": [{"count": 0}]}


def test_two_sockets_of_one_user_both_receive_and_presence_lasts_until_the_last(
    app, socket_client, admin_post
):
    tab1, tab2 = socket_client("alice"), socket_client("alice", via="auth")
    admin_post(["alice"], "both tabs")
    assert [n["message"] for n in received(tab1)["new_notification"]] == ["both tabs"]
    assert [n["message"] for n in received(tab2)["new_notification"]] == ["both tabs"]
    tab1.disconnect()
    note = admin_post(["alice"], "one tab left").get_json()["notifications"][0]
    assert note["status"] == "DELIVERED"
    assert [n["id"] for n in received(tab2)["new_notification"]] == [note["id"]]
    tab2.disconnect()
    assert admin_post(["alice"], "nobody").get_json()["notifications"][0]["status"] == "PENDING"


def test_users_are_isolated(socket_client, admin_post):
    alice, bob = socket_client("alice"), socket_client("bob")
    admin_post(["alice"], "a1")
    admin_post(["bob"], "b1")
    assert [n["message"] for n in received(alice)["new_notification"]] == ["a1"]
    assert [n["message"] for n in received(bob)["new_notification"]] == ["b1"]


@pytest.mark.parametrize("via", ["header", "auth"])
@pytest.mark.parametrize("kind", list(forged_tokens("k" * 32)))
def test_bad_tokens_are_refused_and_get_no_event(app, socket_client, admin_post, via, kind):
    admin_post(["alice"], "must not leak")
    bad = forged_tokens(app.config["JWT_SECRET_KEY"])[kind]
    sc = socket_client(raw_token=bad, via=via)
    assert not sc.is_connected()
    assert sc.queue == []
    assert set(stored_statuses(app, "alice").values()) == {"PENDING"}
    # A refused socket does not count as the user being online.
    assert admin_post(["alice"]).get_json()["notifications"][0]["status"] == "PENDING"


def test_connection_without_any_token_is_refused(app):
    from app.extensions import socketio

    for kwargs in ({}, {"auth": {"token": 42}}, {"auth": "token"}, {"headers": {"Authorization": "Basic x"}}):
        sc = socketio.test_client(app, **kwargs)
        assert not sc.is_connected()
        assert sc.queue == []


def test_header_wins_over_auth_payload(app, socket_client, token, admin_post):
    from app.extensions import socketio

    sc = socketio.test_client(
        app, headers={"Authorization": f"Bearer {token('alice')}"}, auth={"token": token("bob")}
    )
    admin_post(["alice"], "to alice")
    assert [n["message"] for n in received(sc)["new_notification"]] == ["to alice"]
    sc.disconnect()


def _short_token(app, user_id: str, seconds: float, secret: str | None = None) -> str:
    return mint_token(secret or app.config["JWT_SECRET_KEY"], user_id, expires_in=seconds)


def _received_before_close(sc) -> dict[str, list]:
    """What a test client that the server closed got (`received` refuses closed clients)."""
    by_name: dict[str, list] = {}
    for event in sc.queue:
        by_name.setdefault(event["name"], []).append(event["args"][0])
    return by_name


def _wait_disconnected(sc, timeout: float = 6.0) -> bool:
    deadline = time.monotonic() + timeout
    while sc.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not sc.is_connected()


def test_socket_whose_token_expires_gets_token_expired_and_is_closed(app, socket_client, admin_post):
    sc = socket_client(raw_token=_short_token(app, "alice", 1))
    assert sc.is_connected()
    assert _wait_disconnected(sc), "the socket outlived its token"
    assert _received_before_close(sc) == {"unread_count": [{"count": 0}], "token_expired": [{}]}
    note = admin_post(["alice"], "after expiry").get_json()["notifications"][0]
    assert note["status"] == "PENDING"


def test_refreshed_socket_outlives_its_first_token(app, socket_client, admin_post, token):
    sc = socket_client(raw_token=_short_token(app, "alice", 1))
    fresh = token("alice", expires_in=60)
    answer = sc.emit("refresh_token", {"token": fresh}, callback=True)
    assert answer["ok"] is True
    assert answer["exp"] == token_claims(fresh)["exp"]
    time.sleep(2.2)
    assert sc.is_connected()
    admin_post(["alice"], "still here")
    assert [n["message"] for n in received(sc)["new_notification"]] == ["still here"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("other-user", "wrong_user"),
        ("wrong-key", "invalid_token"),
        ("expired", "invalid_token"),
        (None, "bad_request"),
        (42, "bad_request"),
    ],
)
def test_refused_refresh_changes_nothing(app, socket_client, token, payload, error):
    sc = socket_client(raw_token=_short_token(app, "alice", 1))
    sent = {
        "other-user": lambda: token("bob", expires_in=60),
        "wrong-key": lambda: _short_token(app, "alice", 60, secret="another-secret-" + "x" * 32),
        "expired": lambda: _short_token(app, "alice", -10),
    }.get(payload, lambda: payload)()
    answer = sc.emit("refresh_token", sent, callback=True)
    assert answer["ok"] is False and answer["error"] == error
    assert _wait_disconnected(sc), "a refused refresh kept the socket past its token"
    assert _received_before_close(sc) == {"unread_count": [{"count": 0}], "token_expired": [{}]}


@pytest.mark.parametrize("name", ["disconnect", "connect"])
def test_reserved_events_from_a_client_change_nothing(app, socket_client, admin_post, token, name):
    alice = socket_client("alice")
    alice.emit(name, {"token": token("bob")})
    assert alice.is_connected()
    admin_post(["bob"], "for bob only")
    note = admin_post(["alice"], "for alice").get_json()["notifications"][0]
    assert note["status"] == "DELIVERED"
    assert [n["message"] for n in received(alice)["new_notification"]] == ["for alice"]


@pytest.mark.config(MAX_SOCKETS_PER_USER=2)
def test_emitting_disconnect_does_not_get_round_the_socket_limit(socket_client):
    first = socket_client("alice")
    for _ in range(5):
        first.emit("disconnect")
    second, third = socket_client("alice"), socket_client("alice")
    assert first.is_connected() and second.is_connected()
    assert not third.is_connected()


@pytest.mark.config(RATE_LIMIT_SOCKET_EVENTS="5/minute")
def test_socket_over_its_event_limit_is_disconnected(socket_client):
    flooding, calm = socket_client("alice"), socket_client("bob")
    for _ in range(6):
        flooding.emit("whatever", 1)
    calm.emit("whatever", 1)
    assert not flooding.is_connected()
    assert calm.is_connected()


def test_a_database_error_on_connect_refuses_the_socket_and_keeps_its_notifications(
    app, socket_client, admin_post, caplog
):
    note = admin_post(["alice"], "kept").get_json()["notifications"][0]

    def rename(old: str, new: str) -> None:
        with app.app_context():
            db.session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
            db.session.commit()

    rename("notifications", "notifications_away")
    try:
        refused = socket_client("alice")
        assert not refused.is_connected()
        assert "socket connection of user alice refused: database error" in caplog.text
    finally:
        rename("notifications_away", "notifications")
    # The refused socket left nothing behind: alice is offline, and her next connect gets the row.
    assert admin_post(["alice"], "later").get_json()["notifications"][0]["status"] == "PENDING"
    pending = received(socket_client("alice"))["pending_notifications"]
    assert [n["id"] for n in pending[0]][0] == note["id"]
    assert set(stored_statuses(app, "alice").values()) == {"DELIVERED"}


@pytest.mark.config(RATE_LIMIT_SOCKET_CONNECT="2/minute")
def test_user_over_the_connect_limit_is_refused(socket_client):
    for _ in range(2):
        socket_client("alice").disconnect()
    assert not socket_client("alice").is_connected()
    assert socket_client("bob").is_connected()


@pytest.mark.config(RATE_LIMIT_AUTH_FAILURES="2/minute")
def test_address_over_the_failure_limit_still_connects_with_a_valid_token(socket_client):
    for _ in range(5):
        assert not socket_client(raw_token="not-a-jwt").is_connected()
    assert socket_client("alice").is_connected()
    assert not socket_client(raw_token="not-a-jwt").is_connected()


@pytest.mark.config(RATE_LIMIT_AUTH_FAILURES="2/minute")
def test_address_over_the_failure_limit_gets_429_for_bad_tokens_only(client, auth_header):
    for _ in range(2):
        assert client.get("/v1/notifications", headers={"Authorization": "Bearer x"}).status_code == 401
    refused = client.get("/v1/notifications", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert client.get("/v1/notifications").status_code == 429  # no token at all fails too
    assert client.get("/v1/notifications", headers=auth_header("alice")).status_code == 200


@pytest.mark.config(RATE_LIMIT_AUTH_FAILURES="2/minute")
def test_an_address_over_the_failure_limit_is_logged_once_per_window(client, socket_client, caplog):
    for _ in range(10):
        client.get("/v1/notifications", headers={"Authorization": "Bearer x"})
        socket_client(raw_token="not-a-jwt")
    refused_keys = [r.args[0] for r in caplog.records if r.msg == BREACH_LOG]
    # one line per key (the test clients' addresses differ: REST 127.0.0.1, Socket.IO unknown)
    assert len(refused_keys) == len(set(refused_keys)) == 2, refused_keys
    assert all("auth-failures" in key for key in refused_keys)


@pytest.mark.config(RATE_LIMIT_ADMIN="2/minute")
def test_admin_over_the_send_limit_gets_429_and_nothing_is_stored(app, admin_post, client, auth_header):
    assert [admin_post(["alice"]).status_code for _ in range(2)] == [201, 201]
    refused = admin_post(["alice"], "third")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert len(stored_statuses(app, "alice")) == 2
    assert client.get("/v1/notifications", headers=auth_header("alice")).status_code == 200


@pytest.mark.config(RATE_LIMIT_AUTH_FAILURES="2/minute", TRUSTED_PROXIES=1)
def test_behind_a_trusted_proxy_each_client_address_is_counted_apart(client, auth_header):
    def get(address, headers):
        return client.get("/v1/notifications", headers={**headers, "X-Forwarded-For": address})

    for _ in range(3):
        get("203.0.113.1", {"Authorization": "Bearer x"})
    assert get("203.0.113.1", {"Authorization": "Bearer x"}).status_code == 429
    assert get("203.0.113.2", {"Authorization": "Bearer x"}).status_code == 401
