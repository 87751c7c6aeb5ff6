"""The Redis message queue between server processes: what reaches the other processes, and when."""

import json
import time
import uuid

import pytest

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


def test_a_fan_out_reaches_the_other_processes_in_full_when_its_block_ends(queue):
    manager, subscriber = queue
    with manager.publishing_together():
        for user in ("alice", "bob", "carol"):
            emit(manager, user)
        assert published(subscriber, 1, within=0.3) == [], "published before the block ended"
    messages = published(subscriber, 3)
    assert [(m["room"], m["data"][0]["id"]) for m in messages] == [
        ("user:alice", "n-alice"),
        ("user:bob", "n-bob"),
        ("user:carol", "n-carol"),
    ]


def test_outside_a_block_each_emit_is_published_at_once(queue):
    manager, subscriber = queue
    emit(manager, "dave")
    assert [m["room"] for m in published(subscriber, 1)] == ["user:dave"]


def test_nested_blocks_publish_once_at_the_outer_end(queue):
    manager, subscriber = queue
    with manager.publishing_together():
        with manager.publishing_together():
            emit(manager, "erin")
        assert published(subscriber, 1, within=0.3) == []
        emit(manager, "frank")
    assert [m["room"] for m in published(subscriber, 2)] == ["user:erin", "user:frank"]
