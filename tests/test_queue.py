"""The Redis message queue between server processes: what reaches the other processes, and when."""

import json
import time
import uuid

import pytest

from app.delivery import Route
from app.realtime.queue import ListeningRedisManager


@pytest.fixture
def queue(redis_url):
    """A manager as one server process holds it, and a subscriber standing for the other processes."""
    import redis

    channel = f"test-queue-{uuid.uuid4().hex[:8]}"
    subscriber = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(channel)
    subscriber.get_message(timeout=1)  # the subscribe confirmation
    yield ListeningRedisManager(redis_url, channel=channel), subscriber
    subscriber.close()


def published(subscriber, count: int, within: float = 3.0) -> list[dict]:
    messages, deadline = [], time.monotonic() + within
    while len(messages) < count and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.1)
        if message is not None:
            messages.append(json.loads(message["data"]))
    return messages


def emit(manager, user: str) -> None:
    manager.emit("new_notification", {"id": f"n-{user}", "userId": user}, namespace="/", room=f"user:{user}")


def test_a_fan_out_reaches_the_other_processes_in_full_in_one_round_trip(queue, monkeypatch):
    manager, subscriber = queue
    round_trips = []
    real = manager._publish_all
    monkeypatch.setattr(
        manager, "_publish_all", lambda messages: (round_trips.append(len(messages)), real(messages))
    )
    users = ("alice", "bob", "carol")
    manager.emit_routed("new_notification", [(u, {"id": f"n-{u}", "userId": u}) for u in users], Route())
    assert round_trips == [3]
    messages = published(subscriber, 3)
    assert [(m["room"], m["data"][0]["id"]) for m in messages] == [
        ("user:alice", "n-alice"),
        ("user:bob", "n-bob"),
        ("user:carol", "n-carol"),
    ]


def test_an_emit_outside_a_routed_send_is_published_at_once(queue):
    manager, subscriber = queue
    emit(manager, "dave")
    assert [m["room"] for m in published(subscriber, 1)] == ["user:dave"]
