"""The real server delivers over real Socket.IO clients (websocket transport): live, pending, every socket."""

import threading

import pytest

from tests.support.clients import connect
from tests.support.waiting import wait_for
from tests.support.wire import as_recipient_sees, assert_wire_object


@pytest.mark.parametrize("via", ["header", "auth"])
def test_connected_user_gets_notification_live_and_offline_user_gets_it_stored(
    live_server, socket_client, via
):
    alice = connect(socket_client(), live_server, "alice", via=via)

    created = {n["userId"]: n for n in live_server.send(["alice", "bob"], "Deploy finished")}

    assert created["alice"]["status"] == "DELIVERED"
    assert created["bob"]["status"] == "PENDING"
    alice.wait_received(created["alice"]["id"])
    [event] = alice.new_notifications
    assert_wire_object(event, "alice", "Deploy finished")
    assert event == as_recipient_sees(created["alice"])
    assert event["deliveredAt"] is not None
    assert alice.pending_batches == []
    assert live_server.statuses([created["alice"]["id"], created["bob"]["id"]]) == {
        created["alice"]["id"]: "DELIVERED",
        created["bob"]["id"]: "PENDING",
    }


def test_offline_user_gets_pending_on_connect(live_server, socket_client):
    sent = [live_server.send(["carol"], f"while away {i}")[0] for i in range(3)]
    assert [n["status"] for n in sent] == ["PENDING"] * 3

    carol = connect(socket_client(), live_server, "carol")

    wait_for(lambda: carol.pending_batches, message="a pending_notifications event")
    [live] = live_server.send(["carol"], "now online")
    carol.wait_received(live["id"])  # events are ordered: any other batch would be in by now
    [batch] = carol.pending_batches
    assert [n["id"] for n in batch] == [n["id"] for n in sent], "not one batch, oldest first"
    for notification, original in zip(batch, sent, strict=True):
        assert_wire_object(notification, "carol", original["message"])
        assert notification["createdAt"] == original["createdAt"]
    assert carol.new_notifications == [as_recipient_sees(live)]
    assert set(live_server.statuses([n["id"] for n in sent]).values()) == {"DELIVERED"}

    carol.disconnect()
    again = connect(socket_client(), live_server, "carol")
    [marker] = live_server.send(["carol"], "after reconnecting")
    again.wait_received(marker["id"])
    assert again.pending_batches == [], "pending notifications were sent a second time"
    assert again.notification_ids() == [marker["id"]]


def test_every_socket_of_a_user_gets_it_and_user_stays_online_until_the_last_closes(
    live_server, socket_client
):
    first = connect(socket_client(), live_server, "dave")
    second = connect(socket_client(), live_server, "dave")

    [both] = live_server.send(["dave"], "to both tabs")
    first.wait_received(both["id"])
    second.wait_received(both["id"])

    first_sid = first.get_sid()
    first.disconnect()
    live_server.wait_disconnected(first_sid)
    [one_left] = live_server.send(["dave"], "one tab left")
    assert one_left["status"] == "DELIVERED"
    second.wait_received(one_left["id"])
    assert live_server.statuses([one_left["id"]]) == {one_left["id"]: "DELIVERED"}

    second_sid = second.get_sid()
    second.disconnect()
    live_server.wait_disconnected(second_sid)
    [none_left] = live_server.send(["dave"], "no tab left")
    assert none_left["status"] == "PENDING"
    assert live_server.statuses([none_left["id"]]) == {none_left["id"]: "PENDING"}
    assert first.notification_ids() == [both["id"]]
    assert second.notification_ids() == [both["id"], one_left["id"]]


def test_user_never_receives_another_users_notification(live_server, socket_client):
    alice = connect(socket_client(), live_server, "alice")
    bob = connect(socket_client(), live_server, "bob")

    for_alice = [live_server.send(["alice"], f"for alice {i}")[0] for i in range(3)]
    [for_bob] = live_server.send(["bob"], "for bob")
    bob.wait_received(for_bob["id"])
    for notification in for_alice:
        alice.wait_received(notification["id"])

    assert bob.notification_ids() == [for_bob["id"]]
    assert alice.notification_ids() == [n["id"] for n in for_alice]
    listed = live_server.list_notifications("bob")
    assert [n["id"] for n in listed.json()] == [for_bob["id"]]


def test_plain_client_never_gets_a_notification_twice_and_its_status_never_goes_back(
    live_server, socket_client
):
    first = socket_client()
    # A plain client, as every client of the original service: its handlers never answer
    # an acknowledgement request (the gate holds python-socketio's automatic answer back).
    first.ack_gate = threading.Event()
    connect(first, live_server, "pat")
    [seen] = live_server.send(["pat"], "seen live")
    first.wait_received(seen["id"])
    first.disconnect()
    first.ack_gate.set()
    [later] = live_server.send(["pat"], "sent while away")
    second = socket_client()
    connect(second, live_server, "pat")
    second.wait_received(later["id"])
    [after] = live_server.send(["pat"], "after the reconnect")
    second.wait_received(after["id"])
    assert sorted(second.notification_ids()) == sorted([later["id"], after["id"]])
    pending = [n["id"] for n in live_server.list_notifications("pat").json() if n["status"] == "PENDING"]
    assert pending == []


def test_acknowledging_client_gets_again_what_it_received_but_never_acknowledged(live_server, socket_client):
    first = socket_client()
    first.ack_gate = threading.Event()  # its handler holds the acknowledgement back
    connect(first, live_server, "ada", ack=True)
    [note] = live_server.send(["ada"], "received, not acknowledged")
    first.wait_received(note["id"])
    sid = first.get_sid()
    first.disconnect()
    first.ack_gate.set()
    live_server.wait_disconnected(sid)
    assert live_server.statuses([note["id"]]) == {note["id"]: "PENDING"}
    second = socket_client()
    connect(second, live_server, "ada", ack=True)
    second.wait_received(note["id"])
    assert second.pending_ids() == {note["id"]}


def test_acknowledging_client_gets_its_pending_ones_once_while_notifications_arrive_meanwhile(
    live_server, socket_client
):
    """Each one arrives once, pending or live, whichever side of the connect's claim its POST lands."""
    away = [live_server.send(["ivy"], f"while away {i}")[0]["id"] for i in range(300)]
    meanwhile: list[str] = []

    def post_more() -> None:
        for i in range(20):
            meanwhile.append(live_server.send(["ivy"], f"meanwhile {i}")[0]["id"])

    poster = threading.Thread(target=post_more)
    poster.start()
    ivy = connect(socket_client(), live_server, "ivy", ack=True)
    poster.join(30)
    assert len(meanwhile) == 20
    for note_id in away + meanwhile:
        ivy.wait_received(note_id)
    assert sorted(ivy.notification_ids()) == sorted(away + meanwhile), "a notification arrived twice"
    assert [n["id"] for n in ivy.pending_batches[0]][: len(away)] == away, "not oldest first"
    wait_for(
        lambda: set(live_server.statuses(away + meanwhile).values()) == {"DELIVERED"},
        message="every one DELIVERED",
    )
    again = connect(socket_client(), live_server, "ivy", ack=True)
    [marker] = live_server.send(["ivy"], "after reconnecting")
    again.wait_received(marker["id"])
    assert again.notification_ids() == [marker["id"]], "the held ones were sent a second time"
