"""The Redis message queue that links the Socket.IO servers of several processes.

Two kinds of channel:

- the shared channel (`notifications`), which every process subscribes to: python-socketio's
  queue, for everything that is not routed (broadcasts, rooms, disconnects, callbacks, and
  a send to a user that no presence read located);
- one channel per process, `notifications:<presence process id>`: a send to users with a
  `Route` (`emit_routed`) goes only to the channels of the processes the route names as
  holding a socket of each user. A process follows its presence id: it subscribes to the
  channel of a new id before presence registers anything under it (`follow`), and counts as
  alive only while subscribed (`listening_as`).
"""

import logging
import time
from collections.abc import Sequence

import redis

from app import metrics
from app.delivery import Route
from app.protocol import user_room
from app.realtime.patches.socketio_manager import ListeningRedisLoop
from app.realtime.transport import TrackingManagerMixin

log = logging.getLogger(__name__)

# Log line that operators and tests read (tests/support/logs.py): what reached this process's own channel.
ROUTED_LOG = "message queue: %s for %s arrived on this process's channel"
SUBSCRIBED_LOG = "message queue: subscribed to %s"


class ListeningRedisManager(ListeningRedisLoop, TrackingManagerMixin):
    """python-socketio's Redis manager, telling whether it is subscribed right now.

    Local deliveries go through `TrackingManagerMixin` (acknowledged sends).
    A process that is not subscribed does not receive what other processes emit,
    so presence must not count it (see `RedisPresence.heartbeat`). It also retries
    every second instead of backing off to a minute, so live delivery resumes soon
    after Redis comes back.
    """

    SUBSCRIBE_TIMEOUT = 5.0  # seconds `follow` waits for Redis to confirm a subscription
    KEPT_CHANNELS = 2  # own channels listened on: the current presence id's and the one before

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._own: list[str] = []  # presence ids whose channel this process listens on, newest last
        self._control = None  # a plain client, to ask Redis who is subscribed

    def channel_of(self, process_id: str) -> str:
        """The channel of the process registered in presence as `process_id`."""
        return f"{self.channel}:{process_id}"

    # ---- publishing -------------------------------------------------------------

    def emit_routed(self, event: str, items: Sequence[tuple[str, object]], route: Route) -> None:
        """Emit each (user, payload) to the user's room: here, and on the channels `route` names.

        This process's sockets get their events at once; the other processes get them all in
        one Redis round trip at the end (a fan-out published one by one costs a round trip
        per user). A user `route` locates goes to the channels of the other processes holding
        their sockets (none when this process is the only one); any other user, to the shared
        channel. `route.acknowledging_only`: acknowledging sockets only, and this process's
        own only when the route names it (or does not locate the user).
        """
        own = set(self._own)
        published = []
        for user_id, payload in items:
            message = {
                "method": "emit", "event": event, "data": [payload], "binary": False, "namespace": "/",
                "room": user_room(user_id), "skip_sid": None, "callback": None, "host_id": self.host_id,
            }  # fmt: skip
            if route.acknowledging_only:
                message["acknowledging_only"] = True
            holders = route.processes.get(user_id)
            if not route.acknowledging_only or holders is None or own & set(holders):
                self._handle_emit(message)
            if holders is None:
                published.append((self.channel, message))
            else:
                published += [(self.channel_of(p), message) for p in sorted(holders) if p not in own]
        self._publish_all(published)

    def _publish(self, data):
        if self._to_own_socket(data):
            return None  # handled here already: a socket id names one socket, of one process
        return super()._publish(data)

    def _to_own_socket(self, data) -> bool:
        """An emit to one socket of this process (connect's pending notifications and count).

        python-socketio publishes every emit, even to a socket id it has just delivered to itself.
        """
        if data.get("method") != "emit" or data.get("callback") is not None:
            return False
        room, namespace = data.get("room"), data.get("namespace") or "/"
        return isinstance(room, str) and room in self.rooms.get(namespace, {}).get(None, ())

    def _publish_all(self, messages: list) -> None:
        if not messages:
            return
        if len(messages) == 1 and messages[0][0] == self.channel:
            super()._publish(messages[0][1])
            return
        encoded = [(channel, self.json.dumps(message)) for channel, message in messages]
        for attempt in (1, 2):  # like python-socketio's own publish: reconnect once
            try:
                if not self.connected:
                    self._redis_connect()
                pipe = self.redis.pipeline(transaction=False)
                for channel, text in encoded:
                    pipe.publish(channel, text)
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

    # ---- handling -----------------------------------------------------------------

    def _handle_emit(self, message):
        """python-socketio's handling, without the plain sockets for a send to acknowledging ones only."""
        if message.get("acknowledging_only") and self.tracker is not None:
            namespace, room = message.get("namespace") or "/", message.get("room")
            plain = [
                sid
                for sid, _eio_sid in list(self.get_participants(namespace, room))
                if self.tracker.acknowledging(sid) is False
            ]
            if plain:
                skip = message.get("skip_sid")
                skip = list(skip) if isinstance(skip, list) else ([skip] if skip else [])
                message = {**message, "skip_sid": skip + plain}
        return super()._handle_emit(message)

    # ---- listening ----------------------------------------------------------------

    def follow(self, process_id: str) -> bool:
        """Listen on the channel of presence id `process_id`; True once Redis confirms it.

        Presence registers nothing under a new id before this returned True, so no other
        process ever publishes to a channel nobody listens on. The previous id's channel
        stays subscribed (a sender may have read it just before), older ones are dropped.
        """
        channel = self.channel_of(process_id)
        if process_id not in self._own:
            self._own.append(process_id)
        dropped, self._own = self._own[: -self.KEPT_CHANNELS], self._own[-self.KEPT_CHANNELS :]
        listener = self._listener
        if not self.listening or listener is None:
            return False  # the listening loop subscribes to it when it connects
        try:
            listener.subscribe(channel)
            if dropped:
                listener.unsubscribe(*(self.channel_of(p) for p in dropped))
            deadline = time.monotonic() + self.SUBSCRIBE_TIMEOUT
            while time.monotonic() < deadline:
                if self._subscribers(channel) > 0:
                    log.info(SUBSCRIBED_LOG, channel)
                    return True
                time.sleep(0.02)
        except Exception as exc:  # noqa: BLE001  (not subscribed: presence retries at the next beat)
            metrics.REDIS_ERRORS_QUEUE.inc()
            log.warning("message queue: could not subscribe to %s (%s)", channel, exc)
            return False
        log.warning("message queue: no confirmation of the subscription to %s", channel)
        return False

    def _subscribers(self, channel: str) -> int:
        if self._control is None:
            self._control = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        [(_name, count)] = self._control.pubsub_numsub(channel)
        return int(count)

    def listening_as(self, process_id: str) -> bool:
        """Subscribed right now to the shared channel and to the channel of `process_id`."""
        return self.listening and process_id in self._own

    def listen_channels(self) -> list[str]:
        """The shared channel and this process's own."""
        return [self.channel, *(self.channel_of(p) for p in self._own)]

    def subscribed(self, channels: str) -> None:
        log.info(SUBSCRIBED_LOG, channels)

    def arrived(self, channel: bytes, data) -> None:
        if log.isEnabledFor(logging.DEBUG) and channel != self.channel.encode():
            try:
                decoded = self.json.loads(data)
                log.debug(ROUTED_LOG, decoded.get("event"), decoded.get("room"))
            except Exception:  # noqa: BLE001  (a log line only)
                return
