"""The Redis message queue that links the Socket.IO servers of several processes."""

import logging
import time

import socketio

from app.services.delivery import TrackingManagerMixin

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

    def _redis_listen_with_retries(self):  # overrides python-socketio's (5.x) loop
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                self.listening = True
                log.info("message queue: subscribed to %s", self.channel)
                yield from self.pubsub.listen()
            except Exception as exc:  # noqa: BLE001  (any failure: reconnect)
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
