"""Three server processes sharing PostgreSQL and Redis: delivery, presence, crashes and Redis outages."""

import time
from datetime import UTC, datetime

import pytest
import requests

from tests.support.cluster import DELIVERY_TIMEOUT, PRESENCE_TTL, running_cluster, unique
from tests.support.logs import PROCESS_REAPED, REDIS_UNREACHABLE, USER_DISCONNECTED, logged
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cluster

POST_INTERVAL = 0.2  # seconds between the POSTs that probe for a state change
PROBE_TIMEOUT = PRESENCE_TTL * 5 + 15  # seconds; generous, the machine is shared


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory, "A", "B", "C") as cluster:
        yield cluster


def test_user_on_one_process_gets_live_what_an_admin_posts_to_another(nodes):
    a, b = nodes.servers["A"], nodes.servers["B"]
    alice, bob = unique("alice"), unique("bob")
    client = nodes.connect(a, alice)

    sent = nodes.send(b.url, [alice, bob], "deploy finished")

    assert (sent[alice]["status"], sent[bob]["status"]) == ("DELIVERED", "PENDING")
    wait_for(lambda: client.got(sent[alice]["id"]), DELIVERY_TIMEOUT, "alice's notification on process A")
    [event] = client.new_notifications
    assert (event["id"], event["userId"], event["message"]) == (sent[alice]["id"], alice, "deploy finished")
    assert nodes.database.statuses([sent[alice]["id"], sent[bob]["id"]]) == {
        sent[alice]["id"]: "DELIVERED",
        sent[bob]["id"]: "PENDING",
    }


def test_fan_out_reaches_every_socket_on_every_process_exactly_once(nodes):
    a, b, c = nodes.servers["A"], nodes.servers["B"], nodes.servers["C"]
    users = [unique(f"user{i}") for i in range(6)]
    offline = [unique("away1"), unique("away2")]
    placement = [
        (users[0], a),
        (users[0], b),
        (users[1], a),
        (users[2], b),
        (users[3], c),
        (users[4], c),
        (users[5], a),
    ]
    sockets = [nodes.connect(server, user, name=f"{user}@{server.name}") for user, server in placement]

    sent = nodes.send(c.url, users + offline, "fan-out")

    assert {u: sent[u]["status"] for u in users + offline} == {
        **dict.fromkeys(users, "DELIVERED"),
        **dict.fromkeys(offline, "PENDING"),
    }
    for client in sockets:
        wait_for(
            lambda client=client: client.got(sent[client.user_id]["id"]),
            DELIVERY_TIMEOUT,
            f"the fan-out on {client.name}",
        )
    # A second POST through the same process is a barrier: its emits travel the same
    # queue after the first one's, so once it arrived, any duplicate would have too.
    marker = nodes.send(c.url, users, "barrier")
    for client in sockets:
        wait_for(
            lambda client=client: client.got(marker[client.user_id]["id"]),
            DELIVERY_TIMEOUT,
            f"the barrier on {client.name}",
        )
    for client in sockets:
        own = {sent[client.user_id]["id"], marker[client.user_id]["id"]}
        assert dict(client.counts) == dict.fromkeys(own, 1), f"{client.name} received {dict(client.counts)}"
    stored = nodes.database.statuses(sent[u]["id"] for u in users + offline)
    assert sorted(stored.values()) == ["DELIVERED"] * 6 + ["PENDING"] * 2


def test_user_stays_online_until_the_last_socket_on_any_process_closes(nodes):
    a, b, c = nodes.servers["A"], nodes.servers["B"], nodes.servers["C"]
    carol = unique("carol")
    on_a = nodes.connect(a, carol, name="carol@A")
    on_b = nodes.connect(b, carol, name="carol@B")

    offset = a.log_size()
    on_a.disconnect()
    a.wait_log(USER_DISCONNECTED, carol, since=offset)
    still_online = nodes.send(c.url, [carol], "one socket left")[carol]

    assert still_online["status"] == "DELIVERED"
    wait_for(lambda: on_b.got(still_online["id"]), DELIVERY_TIMEOUT, "the notification on carol's B socket")

    offset = b.log_size()
    on_b.disconnect()
    b.wait_log(USER_DISCONNECTED, carol, since=offset)
    gone = nodes.send(c.url, [carol], "nobody left")[carol]

    assert gone["status"] == "PENDING"
    assert nodes.database.statuses([gone["id"]]) == {gone["id"]: "PENDING"}


def test_send_notification_command_reaches_a_user_on_another_process_live(nodes):
    b = nodes.servers["B"]
    dave = unique("dave")
    client = nodes.connect(b, dave)

    result = nodes.cli(
        "send-notification", "--user", dave, "from the command line", port=nodes.servers["A"].port
    )

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.strip() == "created 1, delivered live 1, pending 0", result.stderr
    wait_for(
        lambda: client.new_notifications, DELIVERY_TIMEOUT, "the command's notification on dave's socket"
    )
    [event] = client.new_notifications
    assert (event["userId"], event["message"], event["status"]) == (
        dave,
        "from the command line",
        "DELIVERED",
    )
    assert nodes.database.rows("SELECT status FROM notifications WHERE user_id = %s", (dave,)) == [
        ("DELIVERED",)
    ]


def test_killed_process_stops_counting_within_the_ttl_and_nothing_sent_meanwhile_is_lost(
    nodes, record_figures
):
    a, b, c = nodes.servers["A"], nodes.servers["B"], nodes.servers["C"]
    alice = unique("alice")
    first = nodes.connect(a, alice, name="alice@A")
    before = nodes.send(b.url, [alice], "before the crash")[alice]
    assert before["status"] == "DELIVERED"
    wait_for(lambda: first.got(before["id"]), DELIVERY_TIMEOUT, "the notification before the crash")
    dead_id = a.presence_id()
    offsets = {server.name: server.log_size() for server in (b, c)}

    killed_wall = datetime.now(UTC)
    killed_at = time.monotonic()
    a.kill()
    answers = []  # (notification, seconds after the kill when B answered)
    while True:
        notification = nodes.send(b.url, [alice], f"after the crash #{len(answers) + 1}")[alice]
        answers.append((notification, time.monotonic() - killed_at))
        if notification["status"] == "PENDING":
            break
        if time.monotonic() - killed_at > PROBE_TIMEOUT:
            pytest.fail(f"alice still counted online {PROBE_TIMEOUT} s after her process was killed")
        time.sleep(POST_INTERVAL)
    window = answers[-1][1]
    delivered_in_window = [n for n, _ in answers if n["status"] == "DELIVERED"]
    record_figures(
        "crash_window",
        {
            "presenceTtlSeconds": PRESENCE_TTL,
            "windowSeconds": round(window, 3),
            "postIntervalSeconds": POST_INTERVAL,
            "postsAnsweredDeliveredInWindow": len(delivered_in_window),
            "postsTotal": len(answers),
        },
    )

    wait_for(
        lambda: any(
            logged(server.log_since(offsets[server.name]), PROCESS_REAPED, dead_id) for server in (b, c)
        ),
        PROBE_TIMEOUT,
        lambda: f"B or C to reap process {dead_id}:\n{nodes.log_tails()}",
    )
    wait_for(
        lambda: (
            not nodes.database.rows(
                "SELECT id FROM notifications"
                " WHERE user_id = %s AND status = 'DELIVERED' AND delivered_at > %s",
                (alice, killed_wall),
            )
        ),
        DELIVERY_TIMEOUT,
        "the notifications marked DELIVERED after the kill to be back to PENDING",
    )
    again = nodes.connect(c, alice, name="alice@C")
    created_after = {n["id"] for n, _ in answers}
    wait_for(
        lambda: created_after <= again.pending_ids(),
        DELIVERY_TIMEOUT,
        lambda: f"alice's pending batch on C to hold {sorted(created_after - again.pending_ids())}",
    )
    assert set(nodes.database.statuses(created_after).values()) == {"DELIVERED"}


def test_redis_outage_keeps_local_delivery_and_recovers_without_a_restart(nodes, record_figures):
    a, b = nodes.servers["A"], nodes.servers["B"]
    pids = {server.name: server.pid for server in nodes.servers.values()}
    bob, carol = unique("bob"), unique("carol")
    on_a = nodes.connect(a, bob, name="bob@A")
    on_b = nodes.connect(b, carol, name="carol@B")
    offset = b.log_size()

    nodes.redis.shutdown()
    stored = nodes.send(b.url, [bob], "while Redis is down")[bob]

    assert stored["status"] == "PENDING"
    assert nodes.database.statuses([stored["id"]]) == {stored["id"]: "PENDING"}
    assert requests.get(b.url + "/healthz", timeout=10).status_code == 200
    b.wait_log(REDIS_UNREACHABLE, since=offset)
    local = nodes.send(b.url, [carol], "to a socket of this process")[carol]
    assert local["status"] == "DELIVERED"
    wait_for(lambda: on_b.got(local["id"]), DELIVERY_TIMEOUT, "B's notification on B's own socket")

    nodes.redis.start()
    back_at = time.monotonic()
    probes = []
    while True:
        probe = nodes.send(b.url, [bob], f"after Redis came back #{len(probes) + 1}")[bob]
        probes.append(probe)
        if probe["status"] == "DELIVERED":
            break
        if time.monotonic() - back_at > PROBE_TIMEOUT:
            pytest.fail(f"B still stores bob's notifications PENDING {PROBE_TIMEOUT} s after Redis came back")
        time.sleep(POST_INTERVAL)
    wait_for(lambda: probe["id"] in on_a.new_ids(), DELIVERY_TIMEOUT, "the first DELIVERED one, live on A")
    live_after = time.monotonic() - back_at
    wait_for(
        lambda: stored["id"] in on_a.pending_ids(),
        DELIVERY_TIMEOUT,
        "the notification stored during the outage, as pending_notifications on A",
    )
    pending_after = time.monotonic() - back_at
    wait_for(
        lambda: all(on_a.got(p["id"]) for p in probes),
        DELIVERY_TIMEOUT,
        "every notification sent while the processes re-registered",
    )
    record_figures(
        "redis_recovery",
        {
            "liveDeliveryResumedSeconds": round(live_after, 3),
            "outagePendingReceivedBySeconds": round(pending_after, 3),
            "postsAnsweredPendingAfterRedisBack": len(probes) - 1,
            "postIntervalSeconds": POST_INTERVAL,
        },
    )
    assert {server.name: server.pid for server in nodes.servers.values()} == pids
    assert set(nodes.database.statuses([stored["id"], *(p["id"] for p in probes)]).values()) == {"DELIVERED"}
