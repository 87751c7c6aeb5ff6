"""A user connecting while a notification is being created for them never misses it.

Each test forces one interleaving of `Delivery.create` (presence read, INSERT +
commit, presence re-read) with a connect (room + presence, then claim of PENDING rows)
by running the connect from inside the create, at a chosen step, and checks that the
notification reaches the socket exactly once and is stored DELIVERED.
"""

import pytest

from app.services import delivery
from tests.support.inprocess import received, stored_statuses


def ids_received(sc) -> list[str]:
    got = received(sc)
    live = [n["id"] for n in got.get("new_notification", [])]
    pending = [n["id"] for batch in got.get("pending_notifications", []) for n in batch]
    return live + pending


def connect_during_presence_read(monkeypatch, presence, connect, read_number: int):
    """Make the `read_number`-th presence read of a create run `connect()` at that moment.

    read 1: the connect happens after the create saw the user offline, before its INSERT;
    read 2: it happens after the INSERT was committed, before the presence re-read.
    """
    real_online = presence.online
    reads = []

    def online(user_ids):
        reads.append(list(user_ids))
        if len(reads) == read_number:
            if read_number == 1:
                result = real_online(user_ids)  # what the create saw: offline
                connect()
                return result
            connect()
        return real_online(user_ids)

    monkeypatch.setattr(presence, "online", online)
    return reads


@pytest.mark.parametrize("read_number", [1, 2], ids=["before-insert", "after-commit"])
def test_user_connecting_during_create_gets_it_exactly_once(
    app, socket_client, admin_post, monkeypatch, read_number
):
    presence = app.extensions["delivery"].presence
    sockets = []
    reads = connect_during_presence_read(
        monkeypatch, presence, lambda: sockets.append(socket_client("alice")), read_number
    )
    note = admin_post(["alice"], "racing").get_json()["notifications"][0]

    assert len(reads) == 2, "the create must re-read presence after its commit"
    (sc,) = sockets
    assert ids_received(sc) == [note["id"]]
    assert stored_statuses(app, "alice") == {note["id"]: "DELIVERED"}
    if read_number == 1:
        # The create itself sent it, so its answer says so; after-commit, the connect did.
        assert note["status"] == "DELIVERED"


def test_create_committed_between_connect_presence_and_claim_is_sent_once(app, socket_client, monkeypatch):
    """The connect registered presence; a create that read presence just before commits now."""
    presence = app.extensions["delivery"].presence
    real_add, real_online = presence.add, presence.online
    created = []

    def add(user_id, sid, plain=False):
        real_add(user_id, sid, plain)
        stale = iter([set()])  # the create's first read happened before this add
        monkeypatch.setattr(presence, "online", lambda ids: next(stale, None) or real_online(ids))
        created.extend(delivery.current().create([user_id], "mid-connect"))
        monkeypatch.setattr(presence, "online", real_online)

    monkeypatch.setattr(presence, "add", add)
    sc = socket_client("alice")
    (note,) = created
    assert ids_received(sc) == [note.id]
    assert stored_statuses(app, "alice") == {note.id: "DELIVERED"}


def test_without_the_presence_re_read_the_notification_would_wait(
    app, socket_client, admin_post, monkeypatch
):
    """Guard for the test above: with the re-read disabled the same interleaving loses it."""
    monkeypatch.setattr(app.extensions["delivery"], "_deliver_to_late_arrivals", lambda created: None)
    presence = app.extensions["delivery"].presence
    sockets = []
    connect_during_presence_read(monkeypatch, presence, lambda: sockets.append(socket_client("alice")), 1)
    note = admin_post(["alice"], "racing").get_json()["notifications"][0]
    assert ids_received(sockets[0]) == []
    assert stored_statuses(app, "alice") == {note["id"]: "PENDING"}


def test_user_leaving_during_create_gets_it_on_the_next_connect(app, socket_client, admin_post, monkeypatch):
    """The create saw the user online; their socket closed before the row was written."""
    presence = app.extensions["delivery"].presence
    sc = socket_client("alice")
    real_online = presence.online
    reads = []

    def online(user_ids):
        result = real_online(user_ids)
        reads.append(result)
        if len(reads) == 1:
            sc.disconnect()  # after the create saw alice online
        return result

    monkeypatch.setattr(presence, "online", online)
    note = admin_post(["alice"], "left meanwhile").get_json()["notifications"][0]
    monkeypatch.setattr(presence, "online", real_online)

    assert reads[0] == {"alice"}
    assert note["status"] == "PENDING"
    assert stored_statuses(app, "alice") == {note["id"]: "PENDING"}
    again = socket_client("alice")
    assert [n["id"] for n in received(again)["pending_notifications"][0]] == [note["id"]]
