"""Aggregates over task rows for ``rqjobs stats``: counts, failure rates, durations, a timeline.

Counts come from one ``GROUP BY name, status`` in SQL. Durations and the timeline need
each run's start and end: those are streamed (four narrow columns per row) and reduced
here, because date arithmetic and percentiles are not portable across SQLite,
PostgreSQL and MariaDB.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rqjobs.status import ALL, TaskStatus

if TYPE_CHECKING:
    from rqjobs.store.repository import TaskStore

DEFAULT_BUCKETS = 24


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None for no values)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass(frozen=True)
class NameStats:
    """One task name: counts by status, failure rate, run times of finished runs."""

    name: str
    counts: dict[str, int]
    #: failed / (finished + failed); None when nothing has ended yet
    failure_rate: float | None
    #: run times (started -> finished) of the finished runs, in seconds
    p50_s: float | None
    p95_s: float | None
    max_s: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total": self.total,
            "counts": self.counts,
            "failure_rate": self.failure_rate,
            "duration_s": {"p50": self.p50_s, "p95": self.p95_s, "max": self.max_s},
        }


@dataclass(frozen=True)
class Timeline:
    """Runs that ended per time bucket, from ``start`` in steps of ``bucket_s``."""

    start: datetime
    bucket_s: float
    finished: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.bucket_s * len(self.finished))

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "bucket_s": self.bucket_s,
            "finished": self.finished,
            "failed": self.failed,
        }


@dataclass(frozen=True)
class Stats:
    since: datetime | None
    until: datetime
    tasks: list[NameStats]
    timeline: Timeline

    @property
    def totals(self) -> dict[str, int]:
        out = {s: 0 for s in ALL}
        for task in self.tasks:
            for status, n in task.counts.items():
                out[status] = out.get(status, 0) + n
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat(),
            "totals": self.totals,
            "tasks": [t.to_dict() for t in self.tasks],
            "timeline": self.timeline.to_dict(),
        }


def compute_stats(
    store: TaskStore,
    *,
    since: datetime | None = None,
    names: Sequence[str] = (),
    buckets: int = DEFAULT_BUCKETS,
    now: datetime | None = None,
) -> Stats:
    """Aggregate the rows created since ``since`` (all rows when None), per task name."""
    now = now or datetime.now(timezone.utc)
    buckets = max(1, buckets)
    counts = store.counts_by_name_and_status(names=names, since=since)
    durations: dict[str, array[float]] = {}
    #: Unix seconds at which each run ended, finished and failed apart
    ended: dict[bool, array[float]] = {False: array("d"), True: array("d")}
    for name, status, started_s, finished_s in store.iter_run_times(names=names, since=since):
        failed = status == TaskStatus.FAILED.value
        if not failed:
            durations.setdefault(name, array("d")).append(max(0.0, finished_s - started_s))
        ended[failed].append(finished_s)

    # the chart starts where runs started ending, so a young window is not one bar at the edge
    now_s = now.timestamp()
    first_end = min((min(a) for a in ended.values() if a), default=None)
    if first_end is None:
        start_s = (since or now - timedelta(days=1)).timestamp()
    else:
        start_s = first_end if since is None else max(since.timestamp(), first_end)
    bucket_s = max(now_s - start_s, 1.0) / buckets
    per_bucket = {False: [0] * buckets, True: [0] * buckets}
    for failed, ends in ended.items():
        counts_here = per_bucket[failed]
        for end_s in ends:
            counts_here[min(max(int((end_s - start_s) // bucket_s), 0), buckets - 1)] += 1
    start = datetime.fromtimestamp(start_s, timezone.utc)
    finished_per, failed_per = per_bucket[False], per_bucket[True]

    tasks = []
    for name in sorted(counts):
        by_status = {s: counts[name].get(s, 0) for s in ALL}
        ran_to_end = by_status[TaskStatus.FINISHED.value] + by_status[TaskStatus.FAILED.value]
        rate = by_status[TaskStatus.FAILED.value] / ran_to_end if ran_to_end else None
        values = sorted(durations.get(name, ()))
        tasks.append(
            NameStats(
                name=name,
                counts=by_status,
                failure_rate=rate,
                p50_s=percentile(values, 0.50),
                p95_s=percentile(values, 0.95),
                max_s=values[-1] if values else None,
            )
        )
    return Stats(
        since=since,
        until=now,
        tasks=tasks,
        timeline=Timeline(start=start, bucket_s=bucket_s, finished=finished_per, failed=failed_per),
    )


__all__ = ["NameStats", "Stats", "Timeline", "compute_stats", "percentile"]
