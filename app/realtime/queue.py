"""The Redis message queue that links the Socket.IO servers of several processes."""

import logging
import threading
import time
from contextlib import contextmanager

import socketio

from app import metrics
from app.realtime.acks import TrackingManagerMixin

log = logging.getLogger(__name__)


class ListeningRedisManager(socketio.RedisManager, TrackingManagerMixin):
    """python-socketio's Redis manager, telling whether it is subscribed right now.

    Local deliveries go through `TrackingManagerMixin` (acknowledged sends).
    A process that is not subscribed does not receive what other processes emit,
    so presence must not count it (see `RedisPresence.heartbeat`). It also retries
    every second instead of backing off to a minute, so live delivery resumes soon
    after Redis comes back.
    """

    listening = False
    RETRY_SECONDS = 1.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gathering = threading.local()  # per green thread under eventlet

    @contextmanager
    def publishing_together(self):
        """Publish what is emitted inside the block in one Redis round trip, at its end.

        A fan-out emits one event per user; published one by one, each user costs a
        Redis round trip (bench/README.md, "Measurements behind the code"). Sockets of
        this process get their events at once, as always; the other processes get them
        all when the block ends.
        """
        if getattr(self._gathering, "messages", None) is not None:
            yield  # nested: the outer block publishes
            return
        self._gathering.messages = []
        try:
            yield
        finally:
            messages, self._gathering.messages = self._gathering.messages, None
            self._publish_all(messages)

    def _publish(self, data):
        messages = getattr(self._gathering, "messages", None)
        if messages is not None:
            messages.append(data)
            return None
        return super()._publish(data)

    def _publish_all(self, messages: list) -> None:
        if not messages:
            return
        if len(messages) == 1:
            super()._publish(messages[0])
            return
        encoded = [self.json.dumps(message) for message in messages]
        for attempt in (1, 2):  # like python-socketio's own publish: reconnect once
            try:
                if not self.connected:
                    self._redis_connect()
                pipe = self.redis.pipeline(transaction=False)
                for text in encoded:
                    pipe.publish(self.channel, text)
                pipe.execute()
                return
            except Exception as exc:  # noqa: BLE001  (any failure: reconnect, then give up)
                metrics.REDIS_ERRORS_QUEUE.inc()
                self.connected = False
                log.error(
                    "message queue: could not publish %d message(s) (%s)%s",
                    len(encoded),
                    exc,
                    "; retrying" if attempt == 1 else "; giving up",
                )

    def _redis_listen_with_retries(self):  # overrides python-socketio's (5.x) loop
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                self.listening = True
                log.info("message queue: subscribed to %s", self.channel)
                yield from self.pubsub.listen()
            except Exception as exc:  # noqa: BLE001  (any failure: reconnect)
                metrics.REDIS_ERRORS_QUEUE.inc()
                if self.listening:
                    log.warning("message queue: lost the subscription (%s); retrying", exc)
                self.listening = False
                time.sleep(self.RETRY_SECONDS)

    def start_listening(self) -> None:
        """Start the subscriber now rather than at the first client connection."""
        server = self.server
        if server is not None and not server.manager_initialized:
            server.manager_initialized = True
            self.initialize()
