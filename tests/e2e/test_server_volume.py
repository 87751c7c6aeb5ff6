"""The real server under volume and interleaving: every notification arrives, and at most twice."""

import threading
from collections import Counter

import requests

from tests.support.clients import connect


# Default settings: an admin sending as fast as the server answers is never refused.
def test_many_notifications_in_a_row_each_arrive_exactly_once(live_server, socket_client):
    gina = connect(socket_client(), live_server, "gina")
    with requests.Session() as session:
        sent = [live_server.send(["gina"], f"n{i}", session)[0]["id"] for i in range(200)]
        [last] = live_server.send(["gina"], "the last one", session)

    gina.wait_received(last["id"])  # the socket's events are in order: all earlier ones are in
    counts = Counter(gina.notification_ids())
    assert set(counts) == set(sent) | {last["id"]}, f"missing: {set(sent) - set(counts)}"
    assert [i for i, n in counts.items() if n != 1] == [], "some arrived more than once"
    assert [n["message"] for n in gina.new_notifications[:200]] == [f"n{i}" for i in range(200)]
    assert set(live_server.statuses(sent).values()) == {"DELIVERED"}

    # The client acknowledged each one, so leaving does not put any back to PENDING.
    sid = gina.get_sid()
    gina.disconnect()
    live_server.wait_disconnected(sid)
    assert set(live_server.statuses(sent).values()) == {"DELIVERED"}


# Default settings: one user reconnecting 30 times in a burst while an admin sends.
def test_connects_and_disconnects_during_sends_lose_nothing(live_server, socket_client):
    user, cycles, sends = "ivan", 30, 60
    clients, sent, errors = [], [], []
    start = threading.Barrier(2, timeout=10)

    def churn():
        try:
            start.wait()
            for _ in range(cycles):
                client = socket_client()
                clients.append(client)
                connect(client, live_server, user, ack=True)
                client.disconnect()
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def send():
        try:
            start.wait()
            with requests.Session() as session:
                for i in range(sends):
                    sent.append(live_server.send([user], f"burst {i}", session)[0]["id"])
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=churn), threading.Thread(target=send)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "the workers did not finish"
    assert errors == []
    assert len(sent) == sends

    final = connect(socket_client(), live_server, user)
    clients.append(final)
    [marker] = live_server.send([user], "after the churn")
    final.wait_received(marker["id"])

    counts = Counter(i for client in clients for i in client.notification_ids())
    missing = [i for i in sent if counts[i] == 0]
    assert missing == [], (
        f"{len(missing)} of {sends} notifications never reached any socket; their rows are "
        f"{dict(Counter(live_server.statuses(missing).values()))}"
    )
    # A client that leaves right after receiving may disconnect before its ack is
    # read: the server then sends that notification again on the next connect
    # (at least once; clients merge by id). What must never happen is a loss.
    assert max(counts[i] for i in sent) <= 2, "a notification arrived more than twice"
    assert live_server.rows(
        "SELECT count(*) FROM notifications WHERE user_id = ? AND status = 'PENDING'", (user,)
    ) == [(0,)]
