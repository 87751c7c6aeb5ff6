"""Socket.IO through the Flask-SocketIO test client: auth, rooms, pending delivery."""

import time

import jwt as pyjwt
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Notification
from tests.conftest import received
from tests.test_api import forged_tokens


def stored_statuses(app, user_id: str) -> dict[str, str]:
    with app.app_context():
        rows = db.session.execute(
            select(Notification.id, Notification.status).where(Notification.user_id == user_id)
        )
        return {row.id: row.status.value for row in rows}


@pytest.mark.parametrize("via", ["header", "auth"])
def test_connected_user_gets_new_notification_live(app, socket_client, admin_post, via):
    sc = socket_client("alice", via=via)
    assert sc.is_connected()
    note = admin_post(["alice"], "live!").get_json()["notifications"][0]
    got = received(sc)
    assert got["new_notification"] == [note]
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
    assert received(second) == {}


def test_read_notifications_are_not_resent_on_connect(client, socket_client, admin_post, auth_header):
    note = admin_post(["bob"]).get_json()["notifications"][0]
    client.put(f"/v1/notifications/{note['id']}/read", headers=auth_header("bob"))
    assert received(socket_client("bob")) == {}


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


def test_expired_token_after_connect_keeps_the_open_socket(app, socket_client, admin_post):
    short = pyjwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 1}, app.config["JWT_SECRET_KEY"], algorithm="HS256"
    )
    sc = socket_client(raw_token=short)
    assert sc.is_connected()
    time.sleep(1.1)
    assert received(sc) == {}
    admin_post(["alice"], "still connected")
    assert received(sc)["new_notification"][0]["message"] == "still connected"


def test_unknown_events_from_clients_are_ignored(socket_client, admin_post):
    sc = socket_client("alice")
    sc.emit("whatever", {"x": 1})
    sc.emit("new_notification", "spoof")
    admin_post(["alice"], "after junk")
    assert [n["message"] for n in received(sc)["new_notification"]] == ["after junk"]


def test_one_user_cannot_hold_more_than_the_socket_limit(app, socket_client, admin_post):
    app.config["MAX_SOCKETS_PER_USER"] = 2
    first, second = socket_client("alice"), socket_client("alice")
    third = socket_client("alice")
    assert first.is_connected() and second.is_connected()
    assert not third.is_connected()
    assert socket_client("bob").is_connected()  # other users are not affected
    second.disconnect()
    assert socket_client("alice").is_connected()


def test_database_failure_on_connect_refuses_and_leaves_no_presence(
    app, socket_client, admin_post, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from app.services import notifications as service

    admin_post(["alice"], "waiting")

    def down(*criteria):
        raise OperationalError("UPDATE", {}, Exception("pool exhausted"))

    monkeypatch.setattr(service, "_claim", down)
    sc = socket_client("alice")
    assert not sc.is_connected()
    assert app.extensions["presence"].online(["alice"]) == set()
    monkeypatch.undo()
    assert set(stored_statuses(app, "alice").values()) == {"PENDING"}
    again = socket_client("alice")
    assert [n["message"] for n in received(again)["pending_notifications"][0]] == ["waiting"]


def test_socket_handlers_leave_no_routing_errors_for_the_garbage_collector(app, socket_client):
    """Each connect and disconnect runs in a Flask request context; building it must not fail.

    A failed URL match keeps a NotFound with its traceback: a reference cycle per
    handler call that only the cyclic garbage collector frees, whose pauses block
    the whole process and grow with the number of connections.
    """
    import gc

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for i in range(5):
            sc = socket_client(f"gc-{i}")
            assert sc.is_connected()
            sc.disconnect()
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()
    assert not kinds & {"NotFound", "NoMatch", "WebsocketMismatch", "RequestRedirect"}
