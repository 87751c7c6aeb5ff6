"""Presence shared by every process through Redis."""

import logging
import threading
import time
import uuid
from collections.abc import Iterable

import redis

from app import metrics
from app.delivery.ports import DeadProcess, Holders, Reading, Tick
from app.services.presence import reaping
from app.services.presence.local import LocalPresence

log = logging.getLogger(__name__)

# Log lines that operators and tests read (tests/support/logs.py).
REGISTERED_LOG = "presence: registered %d socket(s) of %d user(s) as process %s (was %s)"
UNREACHABLE_LOG = (
    "presence: Redis unreachable (%s); only this process's own sockets count "
    "until it is back, other users' notifications stay PENDING"
)

PLAIN_SUFFIX = ":plain"  # on the value of a plain client's socket in user:<id>


class RedisPresence:
    """Presence shared by every process through Redis.

    Keys (under `prefix`):
      user:<user_id>      hash sid -> process id (`<id>:plain` for a plain client), per socket
      users:<process id>  set of user ids that process holds sockets of (for reaping)
      alive:<process id>  exists while the process is alive (expires after `ttl`)
      processes           hash process id -> time of its last heartbeat

    `self.local` mirrors this process's own sockets, so they can be written back
    after Redis was unreachable.

    With `channels` (the message-queue manager), each process id has a channel of its
    own: a new id is subscribed to (`channels.follow`) before anything is registered under
    it, and the process counts as alive only while `channels.listening_as` its id.
    """

    shared = True

    def __init__(
        self,
        url: str,
        ttl: float,
        prefix: str = "notifications:presence",
        listening=None,
        max_connections: int = 50,
        channels=None,
    ):
        self.local = LocalPresence()
        # A blocking pool: under a burst (1,000 clients leaving at once) green threads wait
        # for a connection instead of failing with "Too many connections", which would
        # look like an outage.
        self.redis = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=5, socket_timeout=2, socket_connect_timeout=2
            )
        )
        self.ttl = ttl
        self.prefix = prefix
        self.process_id = self._new_process_id()
        self._listening = listening or (lambda: True)
        self._channels = channels
        self._in_sync = False  # are this process's sockets all registered in Redis?
        self._redis_ok = True  # did the last Redis call succeed? (to log changes once)
        self._closed = False
        self._beat_lock = threading.Lock()
        self._hdel_if_value = self.redis.register_script(reaping.HDEL_IF_VALUE)

    @staticmethod
    def _new_process_id() -> str:
        return uuid.uuid4().hex[:16]

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _register(self, pipe, user_id: str, sid: str) -> None:
        holder = f"{self.process_id}{PLAIN_SUFFIX}" if self.local.is_plain(sid) else self.process_id
        pipe.hset(self._key("user", user_id), sid, holder)
        pipe.sadd(self._key("users", self.process_id), user_id)

    def _prove_alive(self, pipe) -> None:
        pipe.set(self._key("alive", self.process_id), "1", ex=max(1, round(self.ttl)))
        pipe.hset(self._key("processes"), self.process_id, repr(time.time()))

    def add(self, user_id: str, sid: str, plain: bool = False) -> None:
        """Count socket `sid` of `user_id`; while Redis is unreachable, only locally."""
        self.local.add(user_id, sid, plain)
        if not self._in_sync:
            return  # the heartbeat that restores the connection registers it
        try:
            pipe = self.redis.pipeline()
            self._register(pipe, user_id, sid)
            pipe.execute()
        except redis.RedisError as exc:
            self._lost(exc)

    def _lost(self, exc: Exception) -> None:
        metrics.REDIS_ERRORS_PRESENCE.inc()
        if self._redis_ok:
            log.warning(UNREACHABLE_LOG, exc)
        self._redis_ok = False
        self._in_sync = False

    def _reachable(self) -> None:
        if not self._redis_ok:
            log.info("presence: Redis answers again")
        self._redis_ok = True

    def remove(self, sid: str) -> str | None:
        """Forget socket `sid`; if Redis is down, the next heartbeat rewrites the state."""
        user_id = self.local.remove(sid)
        if user_id is not None and self._in_sync:
            try:
                pipe = self.redis.pipeline()
                pipe.hdel(self._key("user", user_id), sid)
                if not self.local.socket_count(user_id):
                    # so a reaper of this process never touches this user's rows
                    pipe.srem(self._key("users", self.process_id), user_id)
                pipe.execute()
            except redis.RedisError as exc:
                self._lost(exc)
        return user_id

    def online(self, user_ids: Iterable[str]) -> set[str]:
        """Users with a socket held by a live process (see `read`)."""
        return set(self.read(user_ids).online)

    def read(self, user_ids: Iterable[str]) -> Reading:
        """Who of `user_ids` has a socket held by a live process, of which kinds, and which processes.

        While Redis is unreachable, only the sockets of this process are known (and only they
        can be reached: sends to them do not need Redis), and no user is located.
        """
        users = list(user_ids)
        local = self.local.read(users)
        if not users:
            return local
        try:
            pipe = self.redis.pipeline(transaction=False)
            for user_id in users:
                pipe.hvals(self._key("user", user_id))
            holders = [[v.decode() for v in values] for values in pipe.execute()]
            processes = sorted({v.removesuffix(PLAIN_SUFFIX) for values in holders for v in values})
            flags = self.redis.mget([self._key("alive", p) for p in processes]) if processes else []
        except redis.RedisError as exc:
            self._lost(exc)
            return local
        self._reachable()
        alive = {p for p, flag in zip(processes, flags, strict=True) if flag is not None}
        return self._located(local, dict(zip(users, holders, strict=True)), alive)

    def _located(self, local: Reading, values: dict[str, list[str]], alive: set[str]) -> Reading:
        """`local` with what Redis holds (`values`: per user, the entries of user:<id>) of live processes."""
        online, plain, acknowledging = set(local.online), set(local.plain), set(local.acknowledging)
        located: dict[str, Holders] = {}
        for user_id, entries in values.items():
            # This process's own sockets count even when they are not registered (yet).
            processes = {self.process_id} if user_id in local.online else set()
            acknowledging_on = {self.process_id} if user_id in local.acknowledging else set()
            for entry in entries:
                process_id = entry.removesuffix(PLAIN_SUFFIX)
                if process_id in alive:
                    online.add(user_id)
                    processes.add(process_id)
                    if entry.endswith(PLAIN_SUFFIX):
                        plain.add(user_id)
                    else:
                        acknowledging.add(user_id)
                        acknowledging_on.add(process_id)
            located[user_id] = Holders(frozenset(processes), frozenset(acknowledging_on))
        return Reading(frozenset(online), frozenset(plain), frozenset(acknowledging), located)

    def socket_count(self, user_id: str) -> int:
        """How many sockets `user_id` has open, in every process (this one's if Redis is down)."""
        local = self.local.socket_count(user_id)
        try:
            return max(local, self.redis.hlen(self._key("user", user_id)))
        except redis.RedisError as exc:
            self._lost(exc)
            return local

    @property
    def in_sync(self) -> bool:
        """Are all of this process's sockets registered in Redis?"""
        return self._in_sync

    def heartbeat(self) -> Tick:
        """Prove this process alive, restore its sockets after an outage, find dead ones.

        A process counts as alive only while its message-queue listener is
        subscribed: otherwise it would be counted online without receiving emits.
        """
        with self._beat_lock:
            return self._heartbeat()

    def _heartbeat(self) -> Tick:
        tick = Tick()
        if self._closed:
            return tick
        if not self._listening() or (
            self._in_sync and self._channels is not None and not self._channels.listening_as(self.process_id)
        ):
            if self._in_sync:
                log.warning("presence: message queue listener is down; not counting this process")
            self._in_sync = False
            return tick
        try:
            if not self._in_sync or not self.redis.exists(self._key("alive", self.process_id)):
                tick.resynced_users = self._resync()
            else:
                pipe = self.redis.pipeline()
                self._prove_alive(pipe)
                pipe.execute()
            tick.dead = self._find_dead()
            self._reachable()
        except redis.RedisError as exc:
            self._lost(exc)
        return tick

    def _resync(self) -> set[str]:
        """Register every local socket again, under a fresh process id.

        A fresh id, because other processes may be reaping the old one right now.
        Its message-queue channel is subscribed to first: another process publishes to it
        as soon as it reads a socket registered under it.
        Sockets that connect or close while this runs write through themselves
        (`_in_sync` is set first); one that closed meanwhile is removed again after.
        """
        new_id = self._new_process_id()
        if self._channels is not None and not self._channels.follow(new_id):
            log.warning("presence: not subscribed to this process's channel yet; not counting this process")
            return set()
        old_id, self.process_id = self.process_id, new_id
        self._in_sync = True
        snapshot = self.local.sockets()
        pipe = self.redis.pipeline()
        self._prove_alive(pipe)
        for sid, user_id in snapshot:
            self._register(pipe, user_id, sid)
        try:
            pipe.execute()
            closed = [(sid, user_id) for sid, user_id in snapshot if not self.local.holds(sid)]
            if closed:
                pipe = self.redis.pipeline()
                for sid, user_id in closed:
                    pipe.hdel(self._key("user", user_id), sid)
                pipe.execute()
        except redis.RedisError:
            self._in_sync = False
            raise
        users = self.local.local_users()
        log.info(
            REGISTERED_LOG,
            len(snapshot),
            len(users),
            self.process_id,
            old_id,
        )
        return users

    def _find_dead(self) -> list[DeadProcess]:
        """Processes whose alive key expired, each claimed by this process alone."""
        return reaping.find_dead(self.redis, self._key, self.process_id, self._hdel_if_value)

    def finish_reaping(self, dead: DeadProcess) -> None:
        """Forget a dead process once its users' notifications were put back."""
        reaping.forget(self.redis, self._key, dead)

    def close(self) -> None:
        """Remove this process's sockets from Redis on a clean shutdown."""
        with self._beat_lock:  # a heartbeat half-way through would register it again
            self._closed = True
            self._remove_everything()
        self.local.close()

    def _remove_everything(self) -> None:
        try:
            pipe = self.redis.pipeline()
            for sid, user_id in self.local.sockets():
                pipe.hdel(self._key("user", user_id), sid)
            pipe.delete(self._key("alive", self.process_id), self._key("users", self.process_id))
            pipe.hdel(self._key("processes"), self.process_id)
            pipe.execute()
        except redis.RedisError as exc:
            metrics.REDIS_ERRORS_PRESENCE.inc()
            log.warning("presence: could not clean up on shutdown: %s", exc)
