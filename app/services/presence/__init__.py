"""Who is online right now, counting every socket of a user: the core's `Presence` (app/delivery/ports.py).

`LocalPresence` (local.py) keeps it in this process's memory, the embedded single-process
default; `RedisPresence` (redis.py) shares it between processes through Redis, where each
socket is recorded under the id of the process that holds it, and each process proves it
is alive by refreshing a key with a time to live. A process that stops refreshing (killed,
or cut off from the Redis message queue) stops counting once the key expires, and a
surviving process "reaps" it (`Delivery.tick`, run by the heartbeat of
app/realtime/server.py).

A read (`read`) returns everything its caller needs: who is online, with a plain or an
acknowledging client's socket, and, with Redis, which live processes hold each user's
sockets (`Reading.holders`), with which the sender routes its sends without asking again.
"""

from collections.abc import Callable, Mapping

from app.delivery.ports import Presence
from app.services.presence.local import LocalPresence
from app.services.presence.redis import RedisPresence


def make_presence(config: Mapping, listening: Callable[[], bool] | None = None, channels=None) -> Presence:
    """The presence registry these settings ask for: in Redis when a Redis URL is configured.

    `listening`: whether the message-queue listener is subscribed right now; `channels`: the
    message queue's manager (app/realtime/queue.py), whose subscriptions decide under which id
    this process may count as alive (each id gets a channel of its own).
    """
    url = config.get("PRESENCE_REDIS_URL") or config["SOCKETIO_MESSAGE_QUEUE"]
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        # Registered in Redis by the server's first heartbeat (app/realtime/server.py).
        return RedisPresence(
            url,
            ttl=config["PRESENCE_TTL"],
            prefix=config["PRESENCE_KEY_PREFIX"],
            listening=listening,
            channels=channels,
        )
    return LocalPresence()
