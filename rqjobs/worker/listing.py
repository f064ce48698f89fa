"""Which rqjobs workers are alive, read from what their liveness beacons write to Redis.

Each ``rqjobs worker`` process keeps ``rqjobs:worker:<host>:<pid>`` alive (value: its RQ
worker name, expiry: ``worker_liveness_ttl_s``; see :mod:`rqjobs.worker.liveness`). A key
that exists is a worker that beat within the window; RQ's own hash for that worker name
(read through :mod:`rqjobs.broker.rq_internals`) adds its state, queues and current job.
Each worker's state note (``rqjobs:worker-state:<host>:<pid>``, e.g. ``store failing``:
why a live worker takes no jobs now) is read in the same pipeline as the liveness keys.
One SCAN plus two pipelined round trips (and, given a store, one read of the rows being
run, for their task names), so a dashboard or ``rqjobs workers`` can ask every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rqjobs.hostpid import split_host_pid
from rqjobs.keys import LIVENESS_KEY_PREFIX, worker_state_key

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.store.repository import TaskStore


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
    #: why the worker takes no jobs now, in its own words (``store failing``); "" when all is well
    note: str = ""
    #: the rqjobs task name of ``current_job``'s row (None: no job, no store given, or no row)
    current_task_name: str | None = None
    # (queues paused by an operator will be listed here too, read in the same pipeline)

    @property
    def pid(self) -> int | None:
        parts = split_host_pid(self.label)
        return parts[1] if parts else None

    @property
    def host(self) -> str:
        parts = split_host_pid(self.label)
        return parts[0] if parts else self.label

    @property
    def current_task_id(self) -> int | None:
        """The row id of the job being run: rqjobs' job ids are the row ids."""
        job = self.current_job
        return int(job) if job and job.isdigit() else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``rqjobs workers --json``): times as ISO 8601 in UTC."""
        task_id = self.current_task_id
        return {
            "worker": self.label,
            "host": self.host,
            "pid": self.pid,
            "name": self.name,
            "queues": list(self.queues),
            "state": self.state,
            "current_task": None if task_id is None else {"id": task_id, "name": self.current_task_name},
            "current_job": self.current_job,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "last_heartbeat": self.last_heartbeat.isoformat() if self.last_heartbeat else None,
            "expires_in_s": round(self.expires_in_s, 3),
            "successful": self.successful,
            "failed": self.failed,
            "note": self.note,
        }


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def live_workers(redis: Redis, store: TaskStore | None = None) -> list[LiveWorker]:
    """Every worker whose liveness key exists, sorted by label.

    With ``store``, the rows the busy workers run are read too (one query), so each
    worker's current task has its rqjobs name, not just a job id.
    """
    from rqjobs.broker.rq_internals import parse_rq_time, text, worker_hashes

    keys = sorted({text(k) or "" for k in redis.scan_iter(match=LIVENESS_KEY_PREFIX + "*", count=500)})
    if not keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
        pipe.get(worker_state_key(key[len(LIVENESS_KEY_PREFIX) :]))
    replies = pipe.execute()
    # (key, RQ worker name, ms to expiry, note); a key that expired since the SCAN has no name
    alive = [
        (key, name, replies[3 * i + 1], text(replies[3 * i + 2]) or "")
        for i, key in enumerate(keys)
        if (name := text(replies[3 * i])) is not None
    ]
    hashes = worker_hashes(redis, [name for _, name, _, _ in alive])
    out = []
    for key, name, ttl_ms, note in alive:
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
                note=note,
            )
        )
    if store is not None:
        ids = [w.current_task_id for w in out if w.current_task_id is not None]
        names = {r.id: r.name for r in store.get_many(ids)} if ids else {}
        out = [replace(w, current_task_name=names.get(w.current_task_id or 0)) for w in out]
    return out


__all__ = ["LiveWorker", "live_workers"]
