"""Pings from the process-wide ping scheduler (app/realtime/patches/engineio.py) on the real server:
an idle socket that answers stays up, one that stops answering is closed by its ping timeout."""

import threading
import time

import pytest
import requests
from engineio import packet as eio_packet

from tests.support.clients import connect
from tests.support.logs import USER_DISCONNECTED, logged
from tests.support.waiting import wait_for

PING_INTERVAL = 1  # seconds
PING_TIMEOUT = 2  # seconds
# Beyond the protocol's own bound (a ping interval, then the ping timeout): for a busy machine.
GRACE = 8  # seconds

pytestmark = pytest.mark.server_env(SOCKETIO_PING_INTERVAL=PING_INTERVAL, SOCKETIO_PING_TIMEOUT=PING_TIMEOUT)


def count_pings(client) -> list[float]:
    """The times at which `client` receives an Engine.IO PING from now on (it still answers them)."""
    pings: list[float] = []
    receive = client.eio._receive_packet

    def counting(pkt):
        if pkt.packet_type == eio_packet.PING:
            pings.append(time.monotonic())
        return receive(pkt)

    client.eio._receive_packet = counting
    return pings


def test_idle_socket_answering_pings_stays_connected_across_several_intervals(live_server, socket_client):
    alice = connect(socket_client(), live_server, "alice")
    sid = alice.get_sid()
    pings = count_pings(alice)

    wait_for(
        lambda: len(pings) >= 4,
        4 * PING_INTERVAL + PING_TIMEOUT + GRACE,
        lambda: f"4 pings from the server; got {len(pings)}",
    )

    assert alice.connected and not alice.disconnected.is_set()
    assert alice.get_sid() == sid
    assert not logged(live_server.log(), USER_DISCONNECTED, None, sid)
    assert "ping scheduler" not in live_server.log()
    [created] = live_server.send(["alice"], "still here")
    assert created["status"] == "DELIVERED"
    alice.wait_received(created["id"])


def test_socket_that_stops_answering_pings_is_closed_and_its_user_counts_offline(live_server, socket_client):
    bob = connect(socket_client(), live_server, "bob")
    sid = bob.get_sid()
    pings = count_pings(bob)
    wait_for(lambda: pings, PING_INTERVAL + GRACE, "a first ping, answered")

    bob.go_silent()
    wait_for(
        lambda: logged(live_server.log(), USER_DISCONNECTED, None, sid),
        PING_INTERVAL + PING_TIMEOUT + GRACE,
        f"the server to close the silent socket {sid} on its ping timeout",
    )

    [created] = live_server.send(["bob"], "while silent")
    assert created["status"] == "PENDING"
    assert live_server.statuses([created["id"]]) == {created["id"]: "PENDING"}
    bob.drop()


@pytest.mark.server_env(MAX_CONNECTIONS=4)
def test_open_websockets_hold_their_connection_slots_until_they_close(live_server, socket_client):
    """Open websockets are read without a green thread of the WSGI server each, but still count
    towards MAX_CONNECTIONS: a request waits while they hold every slot, and is served as one closes."""
    clients = [socket_client() for _ in range(4)]
    for i, client in enumerate(clients):
        connect(client, live_server, f"user{i}")
    health: dict = {}
    waiting = threading.Thread(
        target=lambda: health.update(
            answer=requests.get(live_server.url + "/healthz", headers={"Connection": "close"}, timeout=30)
        )
    )
    waiting.start()
    time.sleep(1.5)
    assert "answer" not in health, "a request was served while four websockets held MAX_CONNECTIONS=4"
    clients[0].disconnect()
    waiting.join(timeout=GRACE)
    assert health.get("answer") is not None and health["answer"].status_code == 200
    [sent] = live_server.send(["user1"], "still connected")
    assert sent["status"] == "DELIVERED"
    wait_for(
        lambda: sent["id"] in clients[1].notification_ids(), message="the notification on user1's socket"
    )
