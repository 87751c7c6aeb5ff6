"""The Redis message queue that links the Socket.IO servers of several processes.

Two kinds of channel:

- the shared channel (`notifications`), which every process subscribes to: python-socketio's
  queue, for everything except what is routed (broadcasts, rooms, disconnects, callbacks);
- one channel per process, `notifications:<presence process id>`: an event for one user
  (`ROUTED_EVENTS` to a room `user:<id>`) emitted inside `publishing_together(routes)` goes
  only to the channels of the processes that `routes` names as holding a socket of that user
  (`RedisPresence.last_holders`, read by the sender anyway). A user `routes` does not know
  falls back to the shared channel. A process follows its presence id: it subscribes to the
  channel of a new id before presence registers anything under it (`follow`), and counts
  as alive only while subscribed (`listening_as`).
"""

import logging
import threading
import time
from collections.abc import Collection, Mapping
from contextlib import contextmanager

import redis

from app import metrics
from app.protocol import NOTIFICATION_EVENTS, UNREAD_COUNT, user_room
from app.realtime.acks import TrackingManagerMixin
from app.realtime.patches.socketio import ListeningRedisLoop

log = logging.getLogger(__name__)

# Events to one user that go only to the processes holding a socket of that user, when known.
ROUTED_EVENTS = frozenset((*NOTIFICATION_EVENTS, UNREAD_COUNT))
USER_ROOM_PREFIX = user_room("")
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
        self._gathering = threading.local()  # per green thread under eventlet
        self._own: list[str] = []  # presence ids whose channel this process listens on, newest last
        self._control = None  # a plain client, to ask Redis who is subscribed

    def channel_of(self, process_id: str) -> str:
        """The channel of the process registered in presence as `process_id`."""
        return f"{self.channel}:{process_id}"

    # ---- publishing -------------------------------------------------------------

    @contextmanager
    def publishing_together(self, routes: Mapping[str, Collection[str]] | None = None, again: bool = False):
        """Publish what is emitted inside the block in one Redis round trip, at its end.

        A fan-out emits one event per user; published one by one, each user costs a
        Redis round trip (bench/README.md, "Measurements behind the code"). Sockets of
        this process get their events at once, as always; the other processes get them
        all when the block ends.

        `routes`: user id -> the presence ids of the processes holding a socket of that user;
        a `ROUTED_EVENTS` emit to that user's room is published to their channels only (none
        when this process is the only one). `again`: a re-send to processes that started
        holding an acknowledging socket of the user: acknowledging sockets only, and this
        process's own only when `routes` names it (or does not know the user).
        """
        state = self._gathering
        outer = getattr(state, "routes", None), getattr(state, "again", False)
        if routes is not None:
            state.routes = routes
        state.again = again or outer[1]
        try:
            if getattr(state, "messages", None) is not None:
                yield  # nested: the outer block publishes
                return
            state.messages = []
            try:
                yield
            finally:
                messages, state.messages = state.messages, None
                self._publish_all(messages)
        finally:
            state.routes, state.again = outer

    def _route(self, data) -> list[str] | None:
        """The channels of the processes this message goes to; None: the shared channel."""
        routes = getattr(self._gathering, "routes", None)
        if routes is None or data.get("method") != "emit" or data.get("callback") is not None:
            return None
        room = data.get("room")
        if data.get("event") not in ROUTED_EVENTS or not isinstance(room, str):
            return None
        if not room.startswith(USER_ROOM_PREFIX):
            return None
        holders = routes.get(room.removeprefix(USER_ROOM_PREFIX))
        if holders is None:
            return None
        own = self._own
        return [self.channel_of(p) for p in sorted(holders) if p not in own]

    def _publish(self, data):
        if self._to_own_socket(data):
            return None  # handled here already: a socket id names one socket, of one process
        if getattr(self._gathering, "again", False) and data.get("method") == "emit":
            data["acknowledging_only"] = True
        channels = self._route(data)
        messages = getattr(self._gathering, "messages", None)
        if messages is not None:
            for channel in [self.channel] if channels is None else channels:
                messages.append((channel, data))
            return None
        if channels is None:
            return super()._publish(data)
        if channels:
            self._publish_all([(channel, data) for channel in channels])
        return None

    def _to_own_socket(self, data) -> bool:
        """An emit to one socket of this process (connect's pending notifications and count).

        python-socketio publishes every emit, even to a socket id it has just delivered to
        itself; those were a third of the messages of a fan-out with two processes.
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
        """python-socketio's handling, for a re-send without this process's plain sockets (`again`)."""
        state = self._gathering
        if message.get("host_id") == self.host_id and getattr(state, "again", False):
            # Sent here first, from this process: its sockets only if the routes name it.
            holders = (getattr(state, "routes", None) or {}).get(_user_of(message.get("room")))
            if holders is not None and not set(holders) & set(self._own):
                return None
            message = {**message, "acknowledging_only": True}
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


def _user_of(room) -> str | None:
    if isinstance(room, str) and room.startswith(USER_ROOM_PREFIX):
        return room.removeprefix(USER_ROOM_PREFIX)
    return None
