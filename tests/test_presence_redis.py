"""Presence shared through Redis: several processes, crashes, outages."""

import time

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Notification, NotificationStatus
from app.services import delivery
from app.services.presence.redis import RedisPresence
from tests.support.inprocess import app_token, fresh_app, received
from tests.support.ports import free_port


def process(redis_url, prefix, ttl=15.0) -> RedisPresence:
    """A presence registry as one server process would hold it, registered in Redis."""
    presence = RedisPresence(redis_url, ttl=ttl, prefix=prefix)
    presence.heartbeat()
    return presence


def test_sockets_of_one_process_are_seen_by_another(redis_url, presence_prefix):
    a, b = process(redis_url, presence_prefix), process(redis_url, presence_prefix)
    a.add("alice", "s1")
    assert b.online(["alice", "bob"]) == {"alice"}


def test_a_user_counts_online_until_their_last_socket_anywhere_closes(redis_url, presence_prefix):
    a, b = process(redis_url, presence_prefix), process(redis_url, presence_prefix)
    a.add("alice", "s1")
    b.add("alice", "s2")
    a.remove("s1")
    assert a.online(["alice"]) == {"alice"}
    b.remove("s2")
    assert a.online(["alice"]) == set() and b.online(["alice"]) == set()


def test_a_process_that_stops_beating_stops_counting_and_is_reaped_once(redis_url, presence_prefix):
    a = process(redis_url, presence_prefix, ttl=1)
    b, c = process(redis_url, presence_prefix), process(redis_url, presence_prefix)
    a.add("alice", "s1")
    b.add("bob", "s2")
    assert c.online(["alice", "bob"]) == {"alice", "bob"}
    time.sleep(1.3)  # a is "killed": no heartbeat, its alive key expires
    assert c.online(["alice", "bob"]) == {"bob"}
    ticks = [b.heartbeat(), c.heartbeat()]
    dead = [d for tick in ticks for d in tick.dead]
    assert [(d.process_id, d.user_ids) for d in dead] == [(a.process_id, {"alice"})]
    assert dead[0].last_beat <= time.time()
    for tick, owner in zip(ticks, (b, c), strict=True):
        for d in tick.dead:
            owner.finish_reaping(d)
    assert b.heartbeat().dead == [] and c.heartbeat().dead == []


def test_clean_close_removes_the_process_without_reaping(redis_url, presence_prefix):
    a, b = process(redis_url, presence_prefix), process(redis_url, presence_prefix)
    a.add("alice", "s1")
    a.close()
    assert b.online(["alice"]) == set()
    assert b.heartbeat().dead == []
    assert a.heartbeat().resynced_users == set()  # closed: it stays out


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def test_without_redis_only_local_sockets_count_and_nothing_raises():
    presence = RedisPresence(closed_port_url(), ttl=15, prefix="x")
    presence.heartbeat()
    presence.add("alice", "s1")
    assert presence.online(["alice", "bob"]) == {"alice"}
    assert presence.remove("s1") == "alice"
    assert presence.online(["alice"]) == set()


def test_after_an_outage_the_process_registers_its_sockets_again(redis_url, presence_prefix):
    a, b = process(redis_url, presence_prefix), process(redis_url, presence_prefix)
    good = a.redis
    a.redis = RedisPresence(closed_port_url(), ttl=15, prefix="x").redis  # Redis "goes down" for a
    a.add("alice", "s1")
    assert b.online(["alice"]) == set()
    assert a.heartbeat().resynced_users == set()
    a.redis = good  # back
    assert a.heartbeat().resynced_users == {"alice"}
    assert b.online(["alice"]) == {"alice"}


def test_an_unsubscribed_process_does_not_count(redis_url, presence_prefix):
    listening = {"ok": True}
    a = RedisPresence(redis_url, ttl=1, prefix=presence_prefix, listening=lambda: listening["ok"])
    a.heartbeat()
    b = process(redis_url, presence_prefix)
    a.add("alice", "s1")
    listening["ok"] = False
    a.heartbeat()
    time.sleep(1.3)
    assert b.online(["alice"]) == set()
    listening["ok"] = True
    assert a.heartbeat().resynced_users == {"alice"}
    assert b.online(["alice"]) == {"alice"}


@pytest.fixture
def shared_app(database_uri, redis_url, presence_prefix):
    """An app whose presence lives in Redis, as with a message queue, with empty tables."""
    with fresh_app(
        database_uri,
        prepare=lambda app: app.extensions["delivery"].presence.heartbeat(),
        PRESENCE_REDIS_URL=redis_url,
        PRESENCE_KEY_PREFIX=presence_prefix,
    ) as app:
        yield app


def statuses(app) -> dict[str, NotificationStatus]:
    with app.app_context():
        return dict(db.session.execute(select(Notification.user_id, Notification.status)).all())


def test_what_a_crashed_process_never_got_confirmed_goes_back_to_pending(
    shared_app, redis_url, presence_prefix
):
    from app.extensions import socketio

    shared_app.config["DELIVERY_CONFIRM_TIMEOUT"] = 0
    crashed = process(redis_url, presence_prefix, ttl=1)
    crashed.add("alice", "sid-on-crashed")
    crashed.add("carol", "sid-on-crashed-2")
    with shared_app.app_context():
        before = delivery.current().create(["alice", "bob"], "before the crash")
    assert {n.user_id: n.status for n in before}["alice"] is NotificationStatus.DELIVERED
    time.sleep(1.3)  # the process died right after: its key expires
    # carol reconnects to this process (acknowledging) before the crash is noticed
    carol = socketio.test_client(shared_app, auth={"token": app_token(shared_app, "carol"), "ack": True})
    with shared_app.app_context():
        for_carol = delivery.current().create(["carol"], "for carol")[0]
    assert [n["id"] for n in received(carol)["new_notification"]] == [for_carol.id]
    sid = socketio.server.manager.sid_from_eio_sid(carol.eio_sid, "/")
    shared_app.extensions["delivery"].tracker.confirmed(sid, [for_carol.id])  # carol's client acknowledges
    with shared_app.app_context():
        delivery.current().sweeper.tick()  # reaps the crashed process
        delivery.current().sweeper.sweep()
    got = statuses(shared_app)
    assert got["alice"] is NotificationStatus.PENDING  # never received: sent on reconnect
    assert got["bob"] is NotificationStatus.PENDING
    assert got["carol"] is NotificationStatus.DELIVERED  # acknowledged: never sent again
    assert received(carol) == {}
    carol.disconnect()


def test_pending_stored_while_a_process_was_cut_off_is_sent_when_it_is_back(shared_app, redis_url):
    from app.extensions import socketio

    presence = shared_app.extensions["delivery"].presence
    good = presence.redis
    presence.redis = RedisPresence(closed_port_url(), ttl=15, prefix="x").redis
    alice = socketio.test_client(shared_app, auth={"token": app_token(shared_app, "alice")})
    received(alice)
    with shared_app.app_context():
        delivery.current().sweeper.tick()  # Redis "down": nothing registered
        note = delivery.current().create(["alice"], "during the outage")[0]
    # alice's socket is in this process: it is reached even without Redis
    assert note.status is NotificationStatus.DELIVERED
    assert [n["id"] for n in received(alice)["new_notification"]] == [note.id]
    # meanwhile another process, which cannot see alice's socket, stored one PENDING
    with shared_app.app_context():
        other = Notification(user_id="alice", message="from elsewhere")
        db.session.add(other)
        db.session.commit()
        other_id = other.id
    presence.redis = good
    with shared_app.app_context():
        delivery.current().sweeper.tick()
    assert [[n["id"] for n in batch] for batch in received(alice)["pending_notifications"]] == [[other_id]]
    assert statuses(shared_app)["alice"] is NotificationStatus.DELIVERED
    alice.disconnect()


def test_cli_with_shared_presence_stores_and_counts_without_a_server(shared_app, redis_url, presence_prefix):
    other = process(redis_url, presence_prefix)
    other.add("alice", "sid-elsewhere")
    shared_app.config.update(HOST="127.0.0.1", PORT=free_port())
    result = shared_app.test_cli_runner().invoke(
        args=["send-notification", "--user", "alice", "--user", "bob", "hi"]
    )
    assert result.exit_code == 0, result.output
    assert "created 2, delivered live 1, pending 1" in result.output
    assert "no server answers" not in result.output
    got = statuses(shared_app)
    assert got == {"alice": NotificationStatus.DELIVERED, "bob": NotificationStatus.PENDING}


def test_a_socket_connecting_while_the_process_registers_is_registered_too(redis_url, presence_prefix):
    a = RedisPresence(redis_url, ttl=15, prefix=presence_prefix)
    b = process(redis_url, presence_prefix)
    a.add("alice", "s1")  # before the first heartbeat: known locally only
    real_pipeline, connected = a.redis.pipeline, []

    def pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        def execute(*exec_args, **exec_kwargs):
            if not connected:  # bob connects while the registration is on its way to Redis
                connected.append("bob")
                a.add("bob", "s2")
            return real_execute(*exec_args, **exec_kwargs)

        pipe.execute = execute
        return pipe

    a.redis.pipeline = pipeline
    assert a.heartbeat().resynced_users >= {"alice"}
    a.redis.pipeline = real_pipeline
    assert b.online(["alice", "bob"]) == {"alice", "bob"}
