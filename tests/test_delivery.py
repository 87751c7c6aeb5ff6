"""Acknowledged delivery: what a socket never confirmed is sent again after it leaves."""

import time

from app.realtime.acks import DeliveryTracker
from tests.support.inprocess import received, stored_statuses


def test_tracker_returns_only_unconfirmed_sends_within_the_grace_period():
    tracker = DeliveryTracker(grace=0.2)
    tracker.sent("s1", ["a", "b", "c"])
    tracker.confirmed("s1", ["b"])
    assert sorted(tracker.forget("s1")) == ["a", "c"]
    assert tracker.forget("s1") == []
    tracker.sent("s2", ["old"])
    time.sleep(0.25)
    tracker.sent("s2", ["new"])
    assert tracker.forget("s2") == ["new"]


def test_unacknowledged_notification_goes_back_to_pending_when_the_last_socket_closes(
    app, socket_client, admin_post
):
    # The Flask-SocketIO test client never acknowledges, like a client that vanished.
    first = socket_client("alice")
    note = admin_post(["alice"], "maybe lost").get_json()["notifications"][0]
    assert note["status"] == "DELIVERED"
    first.disconnect()
    assert stored_statuses(app, "alice") == {note["id"]: "PENDING"}
    again = socket_client("alice")
    assert [n["id"] for n in received(again)["pending_notifications"][0]] == [note["id"]]


def test_another_open_socket_keeps_it_delivered(app, socket_client, admin_post):
    tab1, tab2 = socket_client("alice"), socket_client("alice")
    note = admin_post(["alice"]).get_json()["notifications"][0]
    tab1.disconnect()
    assert stored_statuses(app, "alice") == {note["id"]: "DELIVERED"}
    assert [n["id"] for n in received(tab2)["new_notification"]] == [note["id"]]


def test_sends_older_than_the_grace_period_count_as_received(app, socket_client, admin_post):
    app.extensions["deliveries"].grace = 0
    sc = socket_client("alice")
    note = admin_post(["alice"]).get_json()["notifications"][0]
    sc.disconnect()
    assert stored_statuses(app, "alice") == {note["id"]: "DELIVERED"}


def test_acknowledged_notification_stays_delivered(app, socket_client, admin_post):
    sc = socket_client("alice")
    note = admin_post(["alice"]).get_json()["notifications"][0]
    tracker = app.extensions["deliveries"]
    for sid in list(tracker._unconfirmed):  # what the client's ack packet triggers
        tracker.confirmed(sid, [note["id"]])
    sc.disconnect()
    assert stored_statuses(app, "alice") == {note["id"]: "DELIVERED"}
