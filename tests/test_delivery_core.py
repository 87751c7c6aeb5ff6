"""The delivery core on in-memory fakes of its store, presence and transport: no Flask app, no sockets.

Each test forces one interleaving by running a step of another actor inside a presence read
or inside the create's transaction.
"""

from datetime import timedelta

import pytest

from app.delivery import Route
from app.protocol import NEW_NOTIFICATION, PENDING_NOTIFICATIONS, UNREAD_COUNT
from tests.support.fakes import DELIVERED, PENDING, make_delivery


def delivered_to_socket(transport, sid: str) -> list[str]:
    batches = [
        batch for to, event, batch in transport.to_sockets if to == sid and event == PENDING_NOTIFICATIONS
    ]
    return [n["id"] for batch in batches for n in batch]


@pytest.mark.parametrize("moment", ["before-insert", "after-commit"])
def test_a_user_connecting_during_a_create_gets_it_exactly_once(moment):
    """before-insert: after the create saw the user offline; after-commit: before its presence re-read."""
    delivery, store, presence, transport = make_delivery()

    def connect() -> None:
        delivery.connect("alice", "s1", acknowledging=True)

    if moment == "after-commit":
        presence.on_read.append(lambda read: connect() if read == 2 else None)
    [created, _for_bob] = delivery.create(
        ["alice", "bob"], "racing", before_commit=connect if moment == "before-insert" else None
    )

    sent = transport.sent_ids(NEW_NOTIFICATION) + delivered_to_socket(transport, "s1")
    assert sent == [created.id]
    assert store.status(created.id) is DELIVERED


def test_a_create_committed_between_the_connects_presence_and_its_claim_is_claimed_by_the_connect():
    delivery, store, presence, transport = make_delivery()
    real_add = presence.add
    created = []

    def add(user_id, sid, plain=False, process_id=None):
        real_add(user_id, sid, plain, process_id)
        presence.add = real_add
        hidden = presence.sockets.pop(sid)  # the create's first read happened before this add
        created.extend(
            delivery.create(
                [user_id], "mid-connect", before_commit=lambda: presence.sockets.update({sid: hidden})
            )
        )

    presence.add = add
    delivery.connect("alice", "s1", acknowledging=False)
    [note] = created
    assert transport.sent_ids(NEW_NOTIFICATION) + delivered_to_socket(transport, "s1") == [note.id]
    assert store.status(note.id) is DELIVERED


@pytest.mark.parametrize("plain", [False, True], ids=["acknowledging", "plain"])
def test_a_user_leaving_mid_send_in_one_process_gets_it_on_the_next_connect(plain):
    delivery, store, presence, transport = make_delivery()
    delivery.connect("alice", "s1", acknowledging=not plain)
    [note] = delivery.create(["alice"], "left meanwhile", before_commit=lambda: delivery.disconnect("s1"))
    assert (note.status, store.status(note.id)) == (PENDING, PENDING)
    delivery.connect("alice", "s2", acknowledging=True)
    assert delivered_to_socket(transport, "s2") == [note.id]


def test_with_several_processes_a_plain_only_user_leaving_mid_send_keeps_it_received():
    delivery, store, presence, _transport = make_delivery(shared=True)
    presence.add("alice", "elsewhere", plain=True, process_id="pb")
    [note] = delivery.create(["alice"], "hi", before_commit=lambda: presence.remove("elsewhere"))
    assert store.status(note.id) is DELIVERED  # another process may have sent it: never twice


@pytest.mark.parametrize("plain", [False, True], ids=["acknowledging", "plain"])
def test_a_user_moving_between_processes_mid_send_is_followed_unless_plain(plain):
    delivery, _store, presence, transport = make_delivery(shared=True)
    presence.add("alice", "on-b", plain, process_id="pb")

    def move() -> None:
        presence.remove("on-b")
        presence.add("alice", "on-c", plain, process_id="pc")

    [note] = delivery.create(["alice"], "moving", before_commit=move)
    sends = [(route.processes, route.acknowledging_only) for event, _items, route in transport.sends
             if event == NEW_NOTIFICATION]  # fmt: skip
    expected = [({"alice": frozenset({"pb"})}, False)]
    if not plain:
        expected.append(({"alice": frozenset({"pc"})}, True))
    assert sends == expected
    assert note.status is DELIVERED


def test_the_unread_count_goes_to_every_process_any_read_found():
    delivery, _store, presence, transport = make_delivery(shared=True)
    presence.add("alice", "on-b", process_id="pb")
    delivery.create(["alice"], "hi", before_commit=lambda: presence.add("alice", "on-c", process_id="pc"))
    [route] = [route for event, _items, route in transport.sends if event == UNREAD_COUNT]
    assert route == Route({"alice": frozenset({"pb", "pc"})})


def test_a_user_who_muted_the_category_gets_nothing_sent_and_no_count():
    delivery, store, presence, transport = make_delivery()
    presence.add("alice", "s1")
    presence.add("bob", "s2")
    store.muted.add(("bob", "digest"))
    created = delivery.create(["alice", "bob", "carol"], "weekly", category="digest")
    assert [(n.user_id, n.status) for n in created] == [("alice", DELIVERED), ("carol", PENDING)]
    sent_to = {user for event, items, _route in transport.sends for user, _payload in items}
    assert sent_to == {"alice"}
    assert delivery.connect("bob", "s3", acknowledging=False) == []


def test_a_closing_socket_puts_back_what_it_never_acknowledged_and_another_socket_gets_it():
    delivery, store, _presence, transport = make_delivery()
    delivery.connect("alice", "s1", acknowledging=True)
    delivery.connect("alice", "s2", acknowledging=True)
    [note] = delivery.create(["alice"], "hi")
    delivery.tracker.sent("s1", [note.id])  # what the transport records as it sends
    delivery.tracker.sent("s2", [note.id])
    delivery.tracker.confirmed("s2", [])  # s2 has not answered yet either
    assert delivery.disconnect("s1") == "alice"
    assert store.status(note.id) is DELIVERED  # put back, then claimed again for s2
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == [note.id]


def test_a_closing_socket_leaves_what_another_socket_acknowledged():
    delivery, store, _presence, transport = make_delivery()
    delivery.connect("alice", "s1", acknowledging=True)
    delivery.connect("alice", "s2", acknowledging=True)
    [note] = delivery.create(["alice"], "hi")
    delivery.tracker.sent("s1", [note.id])
    delivery.tracker.confirmed("s2", [note.id])
    delivery.disconnect("s1")
    assert store.status(note.id) is DELIVERED and store.rows[note.id].received_at is not None
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == []


def moved_to_another_process(silent: str = "on-a"):
    """alice's socket here goes silent as she connects on process pb; both sockets are sent a notification."""
    delivery, store, presence, transport = make_delivery(shared=True)
    delivery.connect("alice", silent, acknowledging=True)
    presence.add("alice", "on-b", process_id="pb")
    [note] = delivery.create(["alice"], "while moving")
    delivery.tracker.sent(silent, [note.id])  # what the transport records as it sends
    return delivery, store, note, transport


def test_a_silent_socket_closing_leaves_what_the_users_socket_on_another_process_acknowledged():
    delivery, store, note, transport = moved_to_another_process()
    delivery.disconnect("on-a")
    store.confirm([note.id])  # pb writes the acknowledgement it got, within the grace
    delivery.put_back.later.run()
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == []  # not sent a second time
    assert store.rows[note.id].received_at is not None


def test_a_silent_socket_closing_puts_back_after_the_grace_what_nobody_acknowledged():
    delivery, store, note, transport = moved_to_another_process()
    delivery.disconnect("on-a")
    assert store.status(note.id) is DELIVERED and transport.sent_ids(PENDING_NOTIFICATIONS) == []
    [(seconds, _task)] = delivery.put_back.later.tasks
    assert seconds >= 0.5  # several of the other process's confirmation writes
    delivery.put_back.later.run()
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == [note.id]  # sent again, to pb's socket


def test_a_stopping_process_puts_back_at_once_what_waits_out_its_grace():
    delivery, store, note, transport = moved_to_another_process()
    delivery.disconnect("on-a")
    delivery.put_back.waiting_now()
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == [note.id]
    delivery.put_back.later.run()  # the grace ends later: nothing left to do
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == [note.id]


def test_once_the_process_is_stopping_a_closing_socket_puts_back_at_once():
    delivery, _store, note, transport = moved_to_another_process()
    delivery.put_back.waiting_now()  # the stop begins before this socket's close is handled
    delivery.disconnect("on-a")
    assert delivery.put_back.later.tasks == []  # no grace the process may not live through
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == [note.id]


def test_a_closing_socket_of_a_user_offline_everywhere_puts_back_at_once():
    delivery, store, note, _transport = moved_to_another_process()
    delivery.presence.remove("on-b")
    delivery.disconnect("on-a")
    assert store.status(note.id) is PENDING and delivery.put_back.later.tasks == []


def test_the_sweeper_puts_back_and_resends_only_what_stayed_unconfirmed():
    delivery, store, _presence, transport = make_delivery()
    delivery.connect("alice", "s1", acknowledging=True)
    lost, kept = delivery.create(["alice"], "lost") + delivery.create(["alice"], "acknowledged")
    delivery.tracker.confirmed("s1", [kept.id])
    for note in (lost, kept):
        store.rows[note.id].delivered_at -= timedelta(seconds=31)
    assert delivery.sweeper.sweep() == 1
    assert transport.sent_ids(PENDING_NOTIFICATIONS) == [lost.id]
    assert store.status(lost.id) is DELIVERED and store.status(kept.id) is DELIVERED


def test_the_sweeper_leaves_an_offline_users_notification_pending():
    delivery, store, presence, transport = make_delivery()
    delivery.connect("alice", "s1", acknowledging=True)
    [note] = delivery.create(["alice"], "hi")
    presence.remove("s1")  # the process died without closing it
    store.rows[note.id].delivered_at -= timedelta(seconds=31)
    assert delivery.sweeper.sweep() == 0
    assert store.status(note.id) is PENDING


def test_a_plain_socket_confirms_at_once_an_acknowledging_one_does_not():
    delivery, store, _presence, _transport = make_delivery()
    delivery.connect("plain-user", "p1", acknowledging=False)
    delivery.connect("ack-user", "a1", acknowledging=True)
    for_plain, for_ack = delivery.create(["plain-user", "ack-user"], "hi")
    assert store.rows[for_plain.id].received_at is not None
    assert store.rows[for_ack.id].received_at is None


def test_a_refused_connect_keeps_nothing_of_the_socket():
    delivery, _store, presence, transport = make_delivery(MAX_SOCKETS_PER_USER=1)
    delivery.connect("alice", "s1", acknowledging=True)
    with pytest.raises(Exception, match="at most 1"):
        delivery.connect("alice", "s2", acknowledging=True)
    assert delivery.tracker.acknowledging("s2") is None
    assert "s2" not in presence.sockets and "s2" not in transport.rooms
