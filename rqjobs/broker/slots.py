"""Concurrency-limit slots in Redis: at most N running jobs of a task across every worker.

One sorted set per limited task (:func:`rqjobs.keys.limit_slots_key`). A member is one
running job, ``<job id>@<worker name>``; its score is when the slot expires, on the Redis
server's clock, so hosts whose clocks disagree still agree on it. A worker takes a slot
before it starts the job's work horse and gives it back when the horse has ended, on every
path (returned, raised, killed, timed out, stopped). While the job runs the worker's
liveness thread pushes the expiry on every beat; a worker that dies stops pushing, and its
slot lapses within ``worker_liveness_ttl_s``, which is how a slot held by a dead worker is
freed without anyone deciding the worker is dead.

Every step is one Lua script, so "drop lapsed slots, count, take one" is atomic across
workers and hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rqjobs.keys import limit_slots_key

if TYPE_CHECKING:
    from redis import Redis

# KEYS[1] the task's slot set; ARGV: member, limit, lifetime in ms. Returns 1 when taken.
_ACQUIRE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl_ms = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + ttl_ms / 1000, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  return 1
end
return 0
"""

# KEYS: slot sets; ARGV[i]: the member held in KEYS[i], then the lifetime in ms last.
# Only slots still there are extended: a lapsed one may have been given to another job.
_REFRESH_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl_ms = tonumber(ARGV[#ARGV])
local kept = 0
for i, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[i]) then
    redis.call('ZADD', key, 'XX', now + ttl_ms / 1000, ARGV[i])
    redis.call('PEXPIRE', key, ttl_ms)
    kept = kept + 1
  end
end
return kept
"""

# KEYS: slot sets. Returns, per set, the members whose slot has not lapsed.
_HOLDERS_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
end
return out
"""


@dataclass(frozen=True)
class Slot:
    """One slot this process holds: the task's set and the member in it."""

    key: str
    member: str


def slot_member(job_id: str, worker_name: str) -> str:
    """``<job id>@<worker name>``: two workers that both once ran a job never share a slot."""
    return f"{job_id}@{worker_name}"


def acquire(redis: Redis, task_name: str, member: str, limit: int, ttl_s: float) -> Slot | None:
    """Take one of ``limit`` slots of ``task_name`` for ``ttl_s``; None when all are held."""
    key = limit_slots_key(task_name)
    taken = redis.eval(_ACQUIRE_SCRIPT, 1, key, member, int(limit), max(1, int(ttl_s * 1000)))
    return Slot(key, member) if int(taken) else None


def refresh(redis: Redis, slots: Sequence[Slot], ttl_s: float) -> int:
    """Extend the slots still held by ``ttl_s``; returns how many were still there."""
    if not slots:
        return 0
    keys = [s.key for s in slots]
    args = [s.member for s in slots] + [max(1, int(ttl_s * 1000))]
    return int(redis.eval(_REFRESH_SCRIPT, len(keys), *keys, *args))


def release(redis: Redis, slots: Iterable[Slot]) -> None:
    """Give the slots back (a slot already lapsed is simply not there)."""
    pipe = redis.pipeline(transaction=False)
    for slot in slots:
        pipe.zrem(slot.key, slot.member)
    pipe.execute()


def holders(redis: Redis, task_names: Sequence[str]) -> dict[str, list[str]]:
    """Task name -> the members holding a live slot (``<job id>@<worker name>``)."""
    if not task_names:
        return {}
    keys = [limit_slots_key(n) for n in task_names]
    found = redis.eval(_HOLDERS_SCRIPT, len(keys), *keys)
    return {
        name: sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        for name, members in zip(task_names, found, strict=True)
    }


__all__ = ["Slot", "acquire", "holders", "refresh", "release", "slot_member"]
