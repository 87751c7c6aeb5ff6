"""Two server processes routing each user's notifications to the processes that hold the user's sockets.

Watched on the cluster's Redis itself (`QueueWatch`): which channel each message was published
on. Then users move between the processes while notifications stream at them.
"""

import time

import pytest

from tests.support.cluster import (
    CONFIRM_TIMEOUT,
    DELIVERY_TIMEOUT,
    HTTP_TIMEOUT,
    PRESENCE_PREFIX,
    QUEUE_CHANNEL,
    PostStream,
    QueueWatch,
    unique,
)
from tests.support.logs import USER_DISCONNECTED
from tests.support.services import TableLock
from tests.support.waiting import in_background, wait_for

pytestmark = pytest.mark.cluster

MOVES = 6  # times the user moves from one process to the other while the POSTs stream
POST_INTERVAL = 0.05  # seconds between the streamed POSTs
STAY = 0.4  # seconds the user stays on a process between moves
SWEEP_INTERVAL = max(1.0, CONFIRM_TIMEOUT / 3)  # how often each process sweeps (app/realtime/server.py)
SETTLE_TIMEOUT = DELIVERY_TIMEOUT + 4 * CONFIRM_TIMEOUT  # everything lost on the way comes back by then
BLOCK_TIMEOUT = 15  # seconds for a POST to reach the table lock


@pytest.fixture
def queue(nodes):
    watch = QueueWatch(nodes)
    yield watch
    watch.close()


def test_a_notification_reaches_the_users_sockets_on_both_processes(nodes, queue):
    a, b = nodes.servers["A"], nodes.servers["B"]
    alice, bob = unique("alice"), unique("bob")
    alice_on_a = nodes.connect(a, alice, name="alice@A")
    alice_on_b = nodes.connect(b, alice, name="alice@B", ack=False)
    bob_on_b = nodes.connect(b, bob, name="bob@B")

    sent = nodes.send(a.url, [alice, bob], "to both processes")

    for client in (alice_on_a, alice_on_b, bob_on_b):
        wait_for(
            lambda client=client: client.got(sent[client.user_id]["id"]),
            DELIVERY_TIMEOUT,
            f"the notification on {client.name}",
        )
    # A holds a socket of alice and delivers it itself: only B's channel is published to.
    wait_for(lambda: queue.to_user(bob), DELIVERY_TIMEOUT, "bob's messages on the queue")
    assert {channel for channel, _event, _again in queue.to_user(alice)} == {queue.channel_of(b)}
    assert {channel for channel, _event, _again in queue.to_user(bob)} == {queue.channel_of(b)}


def test_a_process_holding_no_socket_of_the_user_is_sent_nothing_for_them(nodes, queue):
    a, b = nodes.servers["A"], nodes.servers["B"]
    carol = unique("carol")
    on_a = nodes.connect(a, carol, name="carol@A")

    from_a = nodes.send(a.url, [carol], "from her own process")[carol]
    from_b = nodes.send(b.url, [carol], "from the other process")[carol]

    for notification in (from_a, from_b):
        wait_for(lambda n=notification: on_a.got(n["id"]), DELIVERY_TIMEOUT, "carol's notification on A")
    # A barrier: B's next POST to someone else on B travels after its first one.
    dave = unique("dave")
    on_b = nodes.connect(b, dave, name="dave@B")
    marker = nodes.send(a.url, [dave], "barrier")[dave]
    wait_for(lambda: on_b.got(marker["id"]), DELIVERY_TIMEOUT, "the barrier on B")
    wait_for(lambda: queue.to_user(dave), DELIVERY_TIMEOUT, "the barrier on the queue")
    sent = queue.to_user(carol)
    assert sent == [
        (queue.channel_of(a), "new_notification", False),
        (queue.channel_of(a), "unread_count", False),
    ], f"published for carol: {sent}"
    assert QUEUE_CHANNEL not in {channel for channel, _event, _again in sent}
    assert on_a.counts[from_a["id"]] == on_a.counts[from_b["id"]] == 1


@pytest.mark.parametrize("ack", [True, False], ids=["acknowledging", "plain"])
def test_a_user_who_moves_while_the_row_is_written_is_sent_it_again_on_the_new_process(nodes, queue, ack):
    """A reads presence (the user on A alone), then waits for a table lock before its INSERT; the
    user's socket on A closes and one opens on B (counted online, then waiting for the same lock to
    claim). A's send finds no socket here and goes to no other process; its second presence read
    finds the user on B, which is sent it again, for acknowledging sockets only: a plain client
    that may have had it on A before it moved is never sent it twice (here it is lost, as "at most
    once" allows)."""
    a, b = nodes.servers["A"], nodes.servers["B"]
    user = unique("mover")
    first = nodes.connect(a, user, name=f"{user}@A", ack=ack)
    hash_key, redis = f"{PRESENCE_PREFIX}:user:{user}", nodes.redis.client()
    with TableLock(nodes.database) as lock:
        post = in_background(lambda: nodes.send(a.url, [user], "while the user moves"))
        wait_for(
            lambda: lock.waiters() > 0 or "error" in post, BLOCK_TIMEOUT, "the POST to wait for the lock"
        )
        offset, sid = a.log_size(), first.get_sid()
        first.disconnect()
        a.wait_log(USER_DISCONNECTED, user, sid, since=offset)
        opening = in_background(lambda: nodes.connect(b, user, name=f"{user}@B", ack=ack))
        wait_for(
            lambda: (
                any(v.decode().startswith(b.presence_id()) for v in redis.hvals(hash_key))
                or "error" in opening
            ),
            BLOCK_TIMEOUT,
            "the socket on B to be counted online",
        )
    post["thread"].join(HTTP_TIMEOUT)
    opening["thread"].join(HTTP_TIMEOUT)
    assert "result" in post and "result" in opening, f"{post.get('error')!r} {opening.get('error')!r}"
    sent, second = post["result"][user], opening["result"]
    assert sent["status"] == "DELIVERED"

    if ack:
        wait_for(lambda: second.got(sent["id"]), CONFIRM_TIMEOUT, "the notification on B, before any sweep")
        assert (queue.channel_of(b), "new_notification", True) in queue.to_user(user)
    else:
        time.sleep(CONFIRM_TIMEOUT + 2 * SWEEP_INTERVAL + 1)  # nothing comes, not even from a sweep
        assert not first.got(sent["id"]) and not second.got(sent["id"])
        assert not any(again for _channel, _event, again in queue.to_user(user))


def dance(nodes, user: str, ack: bool, overlap: bool = False) -> list:
    """The user moves A -> B -> A ... while POSTs to either process stream at them; every socket
    it opened, the last one still connected. Each move closes the socket and opens one on the
    other process at once, as after a load balancer's failover; with `overlap`, every other
    move opens the new socket first (a second tab), so that a POST's first presence read sees
    the user on one process and its second read on both (the send again)."""
    a, b = nodes.servers["A"], nodes.servers["B"]
    sockets = []
    with PostStream(nodes, [a.url, b.url], user, POST_INTERVAL) as stream:
        for move in range(MOVES + 1):
            server = (a, b)[move % 2]
            previous = sockets[-1] if sockets else None
            if previous is not None and not (overlap and move % 2):
                previous.disconnect()
            sockets.append(nodes.connect(server, user, name=f"{user}@{server.name}#{move}", ack=ack))
            if previous is not None and previous.connected:
                previous.disconnect()
            time.sleep(STAY)
    assert not stream.errors, stream.errors
    assert len(stream.created) > MOVES * 3, f"too few POSTs answered: {stream.created}"
    return sockets, stream


def received(sockets) -> dict[str, int]:
    counts: dict[str, int] = {}
    for client in sockets:
        for notification_id, count in client.counts.items():
            counts[notification_id] = counts.get(notification_id, 0) + count
    return counts


def test_an_acknowledging_client_moving_between_processes_gets_everything(nodes, queue):
    user = unique("mover")
    sockets, stream = dance(nodes, user, ack=True, overlap=True)
    created = stream.ids()

    wait_for(
        lambda: created <= received(sockets).keys(),
        SETTLE_TIMEOUT,
        lambda: (
            f"every notification on a socket of {user}: missing {sorted(created - received(sockets).keys())}"
        ),
    )
    wait_for(
        lambda: set(nodes.database.statuses(created).values()) == {"DELIVERED"},
        SETTLE_TIMEOUT,
        lambda: f"every row DELIVERED: {nodes.database.statuses(created)}",
    )
    sent_again = [m for m in queue.to_user(user) if m[2]]
    print(f"{len(created)} created, {len(sent_again)} sent again to a process the user moved to")


def test_a_plain_client_moving_between_processes_never_gets_one_twice(nodes, queue):
    a = nodes.servers["A"]
    user = unique("plain-mover")
    sockets, stream = dance(nodes, user, ack=False)
    last = sockets[-1]
    marker = nodes.send(a.url, [user], "after the dance")[user]
    wait_for(lambda: last.got(marker["id"]), DELIVERY_TIMEOUT, "the last notification")
    time.sleep(CONFIRM_TIMEOUT + 2 * SWEEP_INTERVAL + 1)  # a sweep after the confirm timeout, and its send

    counts = received(sockets)
    twice = {notification_id: n for notification_id, n in counts.items() if n > 1}
    assert not twice, f"sent twice to the plain client: {twice}"
    assert not any(m[2] for m in queue.to_user(user)), "sent again for a plain-only user"
    lost = stream.ids() - counts.keys()
    print(f"{len(stream.created)} created, {len(lost)} not received (at most once allows it)")
