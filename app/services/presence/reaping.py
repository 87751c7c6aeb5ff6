"""Reaping for Redis presence: taking out a process that stopped proving it is alive (killed,
or cut off from the message queue), so that its users no longer count as online through it."""

from collections.abc import Callable

import redis

from app.delivery.ports import DeadProcess

# Remove the entries of hash KEYS[1] whose value is ARGV[1] (a dead process id, with or without
# the `:plain` of a plain client's socket), atomically, so that a socket re-registered
# meanwhile under a live process id is kept.
HDEL_IF_VALUE = """
local removed = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  if entries[i + 1] == ARGV[1] or entries[i + 1] == ARGV[1] .. ':plain' then
    redis.call('HDEL', KEYS[1], entries[i])
    removed = removed + 1
  end
end
return removed
"""
CLAIM_SECONDS = 60  # how long one process's claim to reap another lasts


def find_dead(client: redis.Redis, key: Callable[..., str], own_id: str, hdel_if_value) -> list[DeadProcess]:
    """Processes whose alive key expired, each claimed by this process alone; their sockets removed."""
    beats = client.hgetall(key("processes"))
    candidates = [p.decode() for p in beats if p.decode() != own_id]
    if not candidates:
        return []
    flags = client.mget([key("alive", p) for p in candidates])
    dead = []
    for process_id, flag in zip(candidates, flags, strict=True):
        if flag is not None:
            continue
        if not client.set(key("reaping", process_id), own_id, nx=True, ex=CLAIM_SECONDS):
            continue  # another process is reaping it
        users = {u.decode() for u in client.smembers(key("users", process_id))}
        for user_id in users:
            hdel_if_value(keys=[key("user", user_id)], args=[process_id])
        dead.append(DeadProcess(process_id, float(beats[process_id.encode()]), users))
    return dead


def forget(client: redis.Redis, key: Callable[..., str], dead: DeadProcess) -> None:
    """Forget a dead process once its users' notifications were put back."""
    pipe = client.pipeline()
    pipe.delete(key("users", dead.process_id))
    pipe.hdel(key("processes"), dead.process_id)
    pipe.execute()
