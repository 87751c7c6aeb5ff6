"""The two kinds of client (contract v2) through the Flask-SocketIO test client.

The test client never answers an acknowledgement request by itself: an acknowledging
socket's acknowledgement is played by calling the tracker, as the server does when
the client's ACK packet arrives.
"""

import pytest
from sqlalchemy import select

from app.extensions import db, socketio
from app.models import Notification
from app.services import delivery


@pytest.fixture
def connect(socket_client):
    """Factory: a connected test-client socket of a user, acknowledging (`ack=True`) or plain."""

    def make(user_id: str, ack: bool = False):
        sc = socket_client(user_id, via="auth", ack=ack)
        assert sc.is_connected()
        return sc

    return make


def events(sc) -> dict[str, list]:
    by_name: dict[str, list] = {}
    for event in sc.get_received():
        by_name.setdefault(event["name"], []).append(event["args"][0])
    return by_name


def ids_received(sc) -> list[str]:
    got = events(sc)
    ids = [n["id"] for n in got.get("new_notification", [])]
    return ids + [n["id"] for batch in got.get("pending_notifications", []) for n in batch]


def stored(app, notification_id: str) -> tuple[str, bool]:
    """(status, confirmed) of a notification, after this process's confirmations are written."""
    app.extensions["delivery"].confirmations.flush()
    with app.app_context():
        row = db.session.execute(
            select(Notification.status, Notification.received_at).where(Notification.id == notification_id)
        ).one()
        db.session.commit()
    return row.status.value, row.received_at is not None


def acknowledge(app, sc, notification_ids: list[str]) -> None:
    """What the server does when `sc`'s client answers the acknowledgement request."""
    sid = socketio.server.manager.sid_from_eio_sid(sc.eio_sid, "/")
    app.extensions["delivery"].tracker.confirmed(sid, notification_ids)


def send(admin_post, user_id: str, message: str = "hello") -> dict:
    return admin_post([user_id], message).get_json()["notifications"][0]


def test_plain_client_gets_a_notification_once_and_its_status_never_goes_back(app, connect, admin_post):
    first = connect("alice")
    note = send(admin_post, "alice")
    assert ids_received(first) == [note["id"]]
    first.disconnect()
    assert stored(app, note["id"]) == ("DELIVERED", True)
    second = connect("alice")
    assert ids_received(second) == []
    later = send(admin_post, "alice", "later")
    assert ids_received(second) == [later["id"]]


def test_acknowledging_client_gets_again_what_it_did_not_acknowledge(app, connect, admin_post):
    sc = connect("alice", ack=True)
    note = send(admin_post, "alice")
    assert ids_received(sc) == [note["id"]]
    sc.disconnect()
    assert stored(app, note["id"]) == ("PENDING", False)
    again = connect("alice", ack=True)
    assert ids_received(again) == [note["id"]]


def test_acknowledged_notification_is_confirmed_and_never_sent_again(app, connect, admin_post):
    sc = connect("alice", ack=True)
    note = send(admin_post, "alice")
    assert ids_received(sc) == [note["id"]]
    acknowledge(app, sc, [note["id"]])
    sc.disconnect()
    assert stored(app, note["id"]) == ("DELIVERED", True)
    assert ids_received(connect("alice", ack=True)) == []


def test_unacknowledged_send_goes_at_once_to_another_socket_that_connected_after_it(app, connect, admin_post):
    first = connect("alice", ack=True)
    note = send(admin_post, "alice")
    second = connect("alice", ack=True)  # connected after the send: never got it
    assert ids_received(second) == []
    first.disconnect()
    assert ids_received(second) == [note["id"]]
    assert stored(app, note["id"]) == ("DELIVERED", False)


@pytest.mark.config(DELIVERY_CONFIRM_TIMEOUT=0)
def test_sweeper_sends_again_what_stayed_unconfirmed(app, connect, admin_post):
    sc = connect("alice", ack=True)
    note = send(admin_post, "alice")
    assert ids_received(sc) == [note["id"]]
    with app.app_context():
        assert delivery.current().sweeper.sweep() == 1
    assert ids_received(sc) == [note["id"]]
    acknowledge(app, sc, [note["id"]])
    with app.app_context():
        assert delivery.current().sweeper.sweep() == 0
    assert stored(app, note["id"]) == ("DELIVERED", True)


@pytest.mark.config(DELIVERY_CONFIRM_TIMEOUT=0)
def test_a_send_that_never_reached_a_socket_comes_back(app, connect, admin_post):
    """Presence said online, but the emit reached no socket (a lost publish, a crashed process)."""
    app.extensions["delivery"].presence.add("alice", "a-socket-of-a-dead-process")
    note = send(admin_post, "alice")
    assert note["status"] == "DELIVERED"
    app.extensions["delivery"].presence.remove("a-socket-of-a-dead-process")
    with app.app_context():
        delivery.current().sweeper.sweep()
    assert stored(app, note["id"]) == ("PENDING", False)
    assert ids_received(connect("alice", ack=True)) == [note["id"]]


@pytest.mark.config(DELIVERY_CONFIRM_TIMEOUT=0)
def test_the_sweeper_leaves_what_plain_clients_were_sent(app, connect, admin_post):
    sc = connect("alice")
    note = send(admin_post, "alice")
    with app.app_context():
        assert delivery.current().sweeper.sweep() == 0
    assert ids_received(sc) == [note["id"]]
    assert stored(app, note["id"]) == ("DELIVERED", True)


def test_a_user_with_both_kinds_gets_a_plain_send_as_received(app, connect, admin_post):
    acknowledging, plain = connect("alice", ack=True), connect("alice")
    note = send(admin_post, "alice")
    assert ids_received(acknowledging) == ids_received(plain) == [note["id"]]
    acknowledging.disconnect()
    assert stored(app, note["id"]) == ("DELIVERED", True)
    assert ids_received(plain) == []


def test_header_authenticated_client_opts_in_with_auth(app, token, admin_post):
    sc = socketio.test_client(app, headers={"Authorization": f"Bearer {token('alice')}"}, auth={"ack": True})
    try:
        note = send(admin_post, "alice")
        sc.disconnect()
        assert stored(app, note["id"]) == ("PENDING", False)
    finally:
        if sc.is_connected():
            sc.disconnect()


@pytest.mark.config(DELIVERY_CONFIRM_TIMEOUT=0)
def test_a_plain_clients_notification_is_received_as_it_is_sent_even_if_its_process_dies(
    app, connect, admin_post
):
    """Its confirmation never waits on the process holding the plain socket, which may die
    right after the send: the sweeper must not send it to that user again."""
    app.extensions["delivery"].presence.add("alice", "plain-socket-of-a-process-about-to-die", plain=True)
    note = send(admin_post, "alice")
    with app.app_context():
        row = db.session.get(Notification, note["id"])
        assert row.received_at is not None  # stored so, before any flush of confirmations
        db.session.commit()
    app.extensions["delivery"].presence.remove("plain-socket-of-a-process-about-to-die")
    with app.app_context():
        assert delivery.current().sweeper.sweep() == 0
    assert ids_received(connect("alice")) == []
    assert stored(app, note["id"]) == ("DELIVERED", True)


@pytest.mark.parametrize("namespace", ["/", "/other"])
@pytest.mark.parametrize("ack_id", [None, 0, 7, 12345])
def test_a_packet_encoded_once_is_the_one_python_socketio_would_send(namespace, ack_id):
    """The fan-out writes the JSON once and only splices each socket's ack id in."""
    from socketio import packet

    from app import jsonfast
    from app.realtime.patches.socketio_manager import EncodedEvent

    class Packet(packet.Packet):
        json = jsonfast

    data = ["new_notification", {"id": "n1", "message": "é <b>\u2028", "data": {"k": [1, None]}}]
    expected = Packet(packet.EVENT, namespace=namespace, data=data, id=ack_id).encode()
    encoded = EncodedEvent(Packet, namespace, data).with_id(ack_id)
    assert encoded == expected
    decoded = Packet(encoded_packet=encoded)
    assert (decoded.namespace or "/", decoded.id, decoded.data) == (namespace, ack_id, data)
