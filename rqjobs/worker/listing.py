"""Which rqjobs workers are alive, read from what their liveness beacons write to Redis.

Each ``rqjobs worker`` process keeps ``rqjobs:worker:<host>:<pid>`` alive (value: its RQ
worker name, expiry: ``worker_liveness_ttl_s``; see :mod:`rqjobs.worker.liveness`). A key
that exists is a worker that beat within the window; RQ's own hash for that worker name
(read through :mod:`rqjobs.broker.rq_internals`) adds its state, queues and current job.
One SCAN plus two pipelined round trips, so a dashboard can ask every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from rqjobs.hostpid import split_host_pid
from rqjobs.keys import LIVENESS_KEY_PREFIX

if TYPE_CHECKING:
    from redis import Redis


@dataclass(frozen=True)
class LiveWorker:
    """A worker process whose liveness key exists, and what RQ says it is doing."""

    #: ``host:pid``: what the rows' ``worker`` column says
    label: str
    #: RQ's worker name (``host:pid:<8 hex>``)
    name: str
    #: seconds until the liveness key expires unless the worker beats again
    expires_in_s: float
    #: RQ's state (``idle``, ``busy``, ``suspended``...), None when RQ has no hash for it
    state: str | None
    queues: tuple[str, ...]
    current_job: str | None
    started_at: datetime | None
    last_heartbeat: datetime | None
    successful: int
    failed: int

    @property
    def pid(self) -> int | None:
        parts = split_host_pid(self.label)
        return parts[1] if parts else None


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def live_workers(redis: Redis) -> list[LiveWorker]:
    """Every worker whose liveness key exists, sorted by label."""
    from rqjobs.broker.rq_internals import parse_rq_time, text, worker_hashes

    keys = sorted({text(k) or "" for k in redis.scan_iter(match=LIVENESS_KEY_PREFIX + "*", count=500)})
    if not keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute()
    # (key, RQ worker name, ms to expiry); a key that expired since the SCAN has no name
    alive = [
        (key, name, replies[2 * i + 1])
        for i, key in enumerate(keys)
        if (name := text(replies[2 * i])) is not None
    ]
    hashes = worker_hashes(redis, [name for _, name, _ in alive])
    out = []
    for key, name, ttl_ms in alive:
        info = hashes.get(name, {})
        out.append(
            LiveWorker(
                label=key[len(LIVENESS_KEY_PREFIX) :],
                name=name,
                expires_in_s=max(0.0, (ttl_ms or 0) / 1000),
                state=info.get("state"),
                queues=tuple(q for q in (info.get("queues") or "").split(",") if q),
                current_job=info.get("current_job") or None,
                started_at=parse_rq_time(info.get("birth")),
                last_heartbeat=parse_rq_time(info.get("last_heartbeat")),
                successful=_count(info.get("successful_job_count")),
                failed=_count(info.get("failed_job_count")),
            )
        )
    return out


__all__ = ["LiveWorker", "live_workers"]
