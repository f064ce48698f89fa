"""Which rqjobs workers are alive, read from what their liveness beacons write to Redis.

Each ``rqjobs worker`` process keeps ``rqjobs:worker:<host>:<pid>`` alive (value: its RQ
worker name, expiry: ``worker_liveness_ttl_s``; see :mod:`rqjobs.worker_health`). A key
that exists is a worker that beat within the window; RQ's own hash for that worker name
adds its state, queues and current job. One SCAN plus one pipelined round trip, so a
dashboard can ask every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rqjobs.worker_health import LIVENESS_KEY_PREFIX

if TYPE_CHECKING:
    from redis import Redis

#: RQ's hash of a worker's state (``rq.worker.Worker.redis_worker_namespace_prefix``)
RQ_WORKER_PREFIX = "rq:worker:"


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
    def host(self) -> str:
        return self.label.rpartition(":")[0]

    @property
    def pid(self) -> int | None:
        pid = self.label.rpartition(":")[2]
        return int(pid) if pid.isdigit() else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _time(value: Any) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _int(value: Any) -> int:
    text = _text(value)
    return int(text) if text and text.lstrip("-").isdigit() else 0


def live_workers(redis: Redis) -> list[LiveWorker]:
    """Every worker whose liveness key exists, sorted by label."""
    keys = sorted(set(redis.scan_iter(match=LIVENESS_KEY_PREFIX + "*", count=500)))
    if not keys:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute()
    names = [_text(replies[2 * i]) for i in range(len(keys))]
    ttls = [replies[2 * i + 1] for i in range(len(keys))]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(RQ_WORKER_PREFIX + (name or ""))
    hashes = pipe.execute()
    out = []
    for key, name, ttl_ms, raw in zip(keys, names, ttls, hashes, strict=True):
        if name is None:  # expired between the SCAN and the GET
            continue
        info = {_text(k): v for k, v in (raw or {}).items()}
        queues = _text(info.get("queues")) or ""
        out.append(
            LiveWorker(
                label=(_text(key) or "")[len(LIVENESS_KEY_PREFIX) :],
                name=name,
                expires_in_s=max(0.0, (ttl_ms or 0) / 1000),
                state=_text(info.get("state")),
                queues=tuple(q for q in queues.split(",") if q),
                current_job=_text(info.get("current_job")) or None,
                started_at=_time(info.get("birth")),
                last_heartbeat=_time(info.get("last_heartbeat")),
                successful=_int(info.get("successful_job_count")),
                failed=_int(info.get("failed_job_count")),
            )
        )
    return out


__all__ = ["LiveWorker", "live_workers"]
