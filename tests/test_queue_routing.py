"""Routing on the Redis message queue: which channel each message goes to, with a real Redis.

Each process listens on the shared channel and on `<channel>:<presence id>` of its own; a
user's notification events go only to the channels of the processes holding their sockets.
"""

import json
import threading
import time
import uuid

import pytest
import redis
from sqlalchemy import select

from app.delivery import Route
from app.extensions import db, socketio
from app.models import Notification
from app.realtime.queue import ListeningRedisManager
from app.services import delivery
from app.services.presence.redis import RedisPresence
from tests.support.inprocess import fresh_app

QUIET = 0.3  # seconds a subscriber waits to conclude that nothing was published to it


class Channels:
    """A pattern subscriber standing for every process: what was published on which channel."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.channel = channel
        self.pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(channel, f"{channel}:*")
        self.pubsub.get_message(timeout=1)
        self.pubsub.get_message(timeout=1)

    def of(self, process_id: str) -> str:
        return f"{self.channel}:{process_id}"

    def published(self, within: float = QUIET) -> list[tuple[str, dict]]:
        """(channel, message) of everything published until nothing came for `within` seconds."""
        found = []
        while (message := self.pubsub.get_message(timeout=within)) is not None:
            found.append((message["channel"].decode(), json.loads(message["data"])))
        return found

    def close(self) -> None:
        self.pubsub.close()


@pytest.fixture
def channel():
    return f"test-routing-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def seen(redis_url, channel):
    channels = Channels(redis_url, channel)
    yield channels
    channels.close()


@pytest.fixture
def manager(redis_url, channel):
    return ListeningRedisManager(redis_url, channel=channel)


def emit(manager, event: str, user: str, **kwargs) -> None:
    manager.emit(event, {"id": f"n-{user}", "userId": user}, namespace="/", room=f"user:{user}", **kwargs)


def send(manager, event: str, users, route: Route | None = None) -> None:
    """One routed send of `event` to each of `users`, as the transport hands it over."""
    items = [(user, {"id": f"n-{user}", "userId": user}) for user in users]
    manager.emit_routed(event, items, route or Route())


def test_notification_events_go_only_to_the_channels_of_the_processes_holding_the_user(manager, seen):
    route = Route({"alice": {"pa", "pb"}, "bob": {"pb"}, "carol": set()})
    send(manager, "new_notification", ["alice", "bob", "carol"], route)
    manager.emit_routed("pending_notifications", [("bob", [{"id": "p1"}])], route)
    manager.emit_routed("unread_count", [("alice", {"count": 3})], route)

    assert [(channel, m["event"], m["room"]) for channel, m in seen.published()] == [
        (seen.of("pa"), "new_notification", "user:alice"),
        (seen.of("pb"), "new_notification", "user:alice"),
        (seen.of("pb"), "new_notification", "user:bob"),
        (seen.of("pb"), "pending_notifications", "user:bob"),
        (seen.of("pa"), "unread_count", "user:alice"),
        (seen.of("pb"), "unread_count", "user:alice"),
    ]  # carol: held by no other process, published nowhere


def test_the_processs_own_channels_are_left_out_it_delivers_its_sockets_itself(manager, seen):
    manager._own = ["mine-before", "mine"]
    send(manager, "new_notification", ["alice"], Route({"alice": {"mine", "mine-before", "other"}}))
    assert [channel for channel, _ in seen.published()] == [seen.of("other")]


def test_a_user_whose_holders_are_unknown_goes_to_the_shared_channel(manager, seen):
    send(manager, "new_notification", ["dave"], Route({"alice": {"pa"}}))  # presence could not read dave
    send(manager, "new_notification", ["alice"])  # no routes at all (presence unreachable, or not shared)
    emit(manager, "new_notification", "alice")  # not a routed send
    assert [(channel, m["room"]) for channel, m in seen.published()] == [
        (seen.channel, "user:dave"),
        (seen.channel, "user:alice"),
        (seen.channel, "user:alice"),
    ]


def test_everything_but_a_users_notification_events_keeps_the_shared_channel(manager, seen):
    manager.server = type("Server", (), {"async_mode": "threading"})()  # callbacks need a server
    manager.emit("notification_updated", {"id": "n1"}, namespace="/", room="user:alice")
    manager.emit("new_notification", {"id": "n2"}, namespace="/", room="team:ops")
    manager.emit("new_notification", {"id": "n3"}, namespace="/")  # broadcast
    manager.emit("new_notification", {"id": "n4"}, namespace="/", room="user:alice", callback=print)
    manager.enter_room("sid1", "/", "user:alice")
    manager.leave_room("sid1", "/", "user:alice")
    manager.close_room("user:alice", namespace="/")
    found = seen.published()
    assert {channel for channel, _ in found} == {seen.channel}
    assert [(m["method"], m.get("event"), m.get("room")) for _, m in found] == [
        ("emit", "notification_updated", "user:alice"),
        ("emit", "new_notification", "team:ops"),
        ("emit", "new_notification", None),
        ("emit", "new_notification", "user:alice"),
        ("enter_room", None, "user:alice"),
        ("leave_room", None, "user:alice"),
        ("close_room", None, "user:alice"),
    ]


def test_a_routed_fan_out_is_one_pipeline(manager, seen, monkeypatch):
    pipelines = []
    real = manager._publish_all
    monkeypatch.setattr(
        manager, "_publish_all", lambda messages: (pipelines.append(len(messages)), real(messages))
    )
    users = [f"u{i}" for i in range(5)]
    send(manager, "new_notification", users, Route({user: {"pa", "pb"} for user in users}))
    assert pipelines == [10]
    assert len(seen.published()) == 10


def test_a_send_again_is_marked_for_acknowledging_sockets_only(manager, seen):
    send(manager, "new_notification", ["alice"], Route({"alice": {"pb"}}, acknowledging_only=True))
    [(channel, message)] = seen.published()
    assert (channel, message["acknowledging_only"]) == (seen.of("pb"), True)


class Recorded:
    """Stands for TrackingManagerMixin.emit: which sockets of a room a message was handled for."""

    def __init__(self, manager, monkeypatch, participants: dict[str, bool]) -> None:
        self.calls: list[list[str]] = []
        manager.tracker = type("Tracker", (), {"acknowledging": staticmethod(participants.get)})()
        monkeypatch.setattr(
            manager, "get_participants", lambda namespace, room: [(s, s) for s in participants]
        )

        def handled(_self, event, data, namespace, room=None, skip_sid=None, callback=None, **_):
            skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
            self.calls.append(sorted(s for s in participants if s not in skip))

        from app.realtime.transport import TrackingManagerMixin

        monkeypatch.setattr(TrackingManagerMixin, "emit", handled)


def test_a_send_again_skips_plain_sockets_here_and_on_arrival(manager, seen, monkeypatch):
    recorded = Recorded(manager, monkeypatch, {"ack1": True, "plain1": False})
    manager._own = ["mine"]
    send(manager, "new_notification", ["alice"], Route({"alice": {"mine", "pb"}}, acknowledging_only=True))
    [(_channel, message)] = seen.published()
    manager._handle_emit({**message, "host_id": "another process"})  # as it arrives at pb
    assert recorded.calls == [["ack1"], ["ack1"]]


def test_a_send_again_not_naming_this_process_leaves_its_sockets_alone(manager, seen, monkeypatch):
    recorded = Recorded(manager, monkeypatch, {"ack1": True})
    manager._own = ["mine"]
    send(manager, "new_notification", ["alice"], Route({"alice": {"pb"}}, acknowledging_only=True))
    assert recorded.calls == []
    assert [channel for channel, _ in seen.published()] == [seen.of("pb")]
    send(manager, "new_notification", ["alice"])  # a first send: this process's sockets, as always
    assert recorded.calls == [["ack1"]]


# ---- the subscription follows the presence id --------------------------------------------


@pytest.fixture
def listening(manager):
    """The manager's listening loop in a thread, as the server runs it; what it received."""
    received, stop = [], threading.Event()

    def loop():
        for data in manager._listen():
            received.append(json.loads(data))
            if stop.is_set():
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not manager.listening and time.monotonic() < deadline:
        time.sleep(0.02)
    assert manager.listening, "the listening loop never subscribed"
    yield received
    stop.set()
    manager.redis.publish(manager.channel, json.dumps({"method": "noop"}))  # wakes the loop up
    thread.join(2)


def subscribers(redis_url: str, channel: str) -> int:
    return redis.Redis.from_url(redis_url).pubsub_numsub(channel)[0][1]


def arrived(received: list, room: str, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(m.get("room") == room for m in received):
            return True
        time.sleep(0.02)
    return False


def test_the_channel_follows_the_presence_id_through_each_resync(
    redis_url, presence_prefix, manager, listening
):
    presence = RedisPresence(
        redis_url, ttl=15, prefix=presence_prefix, listening=lambda: manager.listening, channels=manager
    )
    other = ListeningRedisManager(redis_url, channel=manager.channel)
    presence.add("alice", "s1")
    presence.heartbeat()
    first = presence.process_id
    assert subscribers(redis_url, manager.channel_of(first)) == 1
    send(other, "new_notification", ["alice"], Route({"alice": {first}}))
    assert arrived(listening, "user:alice")

    ids = [first]
    for _ in range(2):  # Redis "lost" the process: it registers again under a fresh id
        presence.redis.delete(f"{presence_prefix}:alive:{presence.process_id}")
        assert presence.heartbeat().resynced_users == {"alice"}
        ids.append(presence.process_id)
    assert len(set(ids)) == 3
    # the current id's channel, and the one before (a sender may have read it just before)
    assert [subscribers(redis_url, manager.channel_of(p)) for p in ids] == [0, 1, 1]
    assert manager.listening_as(ids[-1]) and not manager.listening_as(ids[0])
    send(other, "new_notification", ["bob"], Route({"bob": {ids[-1]}}))
    assert arrived(listening, "user:bob")


def test_a_process_counts_only_once_subscribed_to_its_own_channel(redis_url, presence_prefix, manager):
    presence = RedisPresence(
        redis_url, ttl=15, prefix=presence_prefix, listening=lambda: True, channels=manager
    )
    observer = RedisPresence(redis_url, ttl=15, prefix=presence_prefix)
    presence.add("alice", "s1")

    presence.heartbeat()  # the listening loop has not subscribed: nothing may be registered

    assert not presence.in_sync
    assert observer.online(["alice"]) == set()
    assert not redis.Redis.from_url(redis_url).keys(f"{presence_prefix}:alive:*")


def test_a_process_stops_counting_when_its_own_channel_is_not_listened_on(
    redis_url, presence_prefix, manager, listening
):
    presence = RedisPresence(
        redis_url, ttl=15, prefix=presence_prefix, listening=lambda: manager.listening, channels=manager
    )
    presence.add("alice", "s1")
    presence.heartbeat()
    assert presence.in_sync
    manager._own = []  # as if the subscription to its channel were gone
    presence.heartbeat()
    assert not presence.in_sync


# ---- what a create publishes, with other processes' sockets in presence -------------------


@pytest.fixture
def routed_app(database_uri, redis_url, presence_prefix, channel):
    """An app as one server process with a message queue; presence of two other processes."""
    overrides = {"SOCKETIO_MESSAGE_QUEUE": redis_url, "PRESENCE_KEY_PREFIX": presence_prefix}
    with fresh_app(database_uri, **overrides) as app:
        socketio.server.manager.channel = channel
        others = []
        for _ in range(2):
            other = RedisPresence(redis_url, ttl=15, prefix=presence_prefix)
            other.heartbeat()
            others.append(other)
        yield app, others


def test_a_create_publishes_to_the_users_processes_only(routed_app, seen):
    app, (b, c) = routed_app
    b.add("alice", "a1")
    c.add("bob", "b1")
    with app.app_context():
        delivery.current().create(["alice", "bob", "nobody"], "hello")
    by_channel = {}
    for channel, message in seen.published():
        by_channel.setdefault(channel, []).append((message["event"], message["room"]))
    assert by_channel == {
        seen.of(b.process_id): [("new_notification", "user:alice"), ("unread_count", "user:alice")],
        seen.of(c.process_id): [("new_notification", "user:bob"), ("unread_count", "user:bob")],
    }


@pytest.mark.parametrize("plain", [False, True], ids=["acknowledging", "plain"])
def test_a_user_who_moves_between_the_two_presence_reads_is_sent_it_again_unless_plain(
    routed_app, seen, plain
):
    """First read: alice on B; her socket there closes and one opens on C before the second read.
    The first send went to B only; C gets it again, for acknowledging sockets only: a plain client
    that had it on B before moving must not get it twice, so nothing is sent again for one."""
    app, (b, c) = routed_app
    b.add("alice", "on-b", plain)

    def move():
        b.remove("on-b")
        c.add("alice", "on-c", plain)

    with app.app_context():
        [created] = delivery.current().create(["alice"], "moving", before_commit=move)
        stored = db.session.execute(select(Notification.status)).scalar_one()
    assert (created.status, stored) == ("DELIVERED", "DELIVERED")
    sends = [
        (channel, m.get("acknowledging_only", False))
        for channel, m in seen.published()
        if m["event"] == "new_notification"
    ]
    expected = [(seen.of(b.process_id), False)]
    if not plain:
        expected.append((seen.of(c.process_id), True))
    assert sends == expected


def test_with_presence_unreachable_a_create_falls_back_to_the_shared_channel(routed_app, seen, monkeypatch):
    app, (b, _c) = routed_app
    b.add("alice", "a1")
    with app.app_context():
        presence = app.extensions["delivery"].presence
        presence.local.add("alice", "here")  # a socket of this process: online without Redis
        monkeypatch.setattr(presence, "redis", RedisPresence("redis://127.0.0.1:1/0", ttl=15).redis)
        delivery.current().create(["alice"], "no presence")
    assert {(channel, m["event"]) for channel, m in seen.published()} == {
        (seen.channel, "new_notification"),
        (seen.channel, "unread_count"),
    }


def test_an_emit_to_a_socket_of_this_process_is_not_published(manager, seen):
    """Connect sends a socket its pending notifications and count by its id: no other process has it."""
    import socketio as python_socketio

    python_socketio.Server(client_manager=manager, async_mode="threading")
    own = manager.pre_connect("own-eio-sid", "/")  # as during its connect handler
    manager.emit("unread_count", {"count": 1}, namespace="/", room=own)
    manager.emit("pending_notifications", [{"id": "p1"}], namespace="/", to=own)
    manager.emit("unread_count", {"count": 2}, namespace="/", room="someone-elses-sid")

    assert [(channel, m["room"]) for channel, m in seen.published()] == [(seen.channel, "someone-elses-sid")]
