"""Aggregate reads for ``rqjobs stats``: counts and run times, computed by the database.

Streamed or grouped in SQL, so stats over millions of rows never builds a record per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, literal, literal_column, select

from rqjobs.status import TaskStatus
from rqjobs.store.models import Task
from rqjobs.store.retry import run_with_retry

_c = Task.__table__.c


class AggregateReads:
    """Mixed into :class:`~rqjobs.store.repository.TaskStore`."""

    engine: Engine
    #: how long a read keeps retrying while the database is unreachable (set by TaskStore)
    retry_s: float

    def counts_by_name_and_status(
        self, *, names: Sequence[str] = (), since: datetime | None = None
    ) -> dict[str, dict[str, int]]:
        """name -> status -> how many rows (created since ``since``): one GROUP BY in SQL."""
        stmt = select(_c.name, _c.status, func.count()).group_by(_c.name, _c.status)
        if names:
            stmt = stmt.where(_c.name.in_(list(names)))
        if since is not None:
            stmt = stmt.where(_c.created_at >= since)

        def work(conn: Connection) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for name, status, n in conn.execute(stmt):
                out.setdefault(name, {})[status] = int(n)
            return out

        return run_with_retry(self.engine, work, budget_s=self.retry_s, what="count tasks", readonly=True)

    def iter_run_times(
        self,
        *,
        statuses: Sequence[str] = (TaskStatus.FINISHED.value, TaskStatus.FAILED.value),
        names: Sequence[str] = (),
        since: datetime | None = None,
        batch: int = 5000,
    ) -> Iterator[tuple[str, str, float, float]]:
        """``(name, status, started, finished)`` of rows that ran to an end, as Unix seconds.

        Streamed in batches, so not retried: a database that drops mid-stream fails the
        read (``rqjobs stats`` is run again) rather than count rows twice. On SQLite,
        PostgreSQL and MariaDB the database turns the timestamps into seconds itself, which
        is several times cheaper than parsing a datetime per row in Python (SQLite stores
        them as text); elsewhere Python does it.
        """
        started = _epoch_seconds(_c.started_at, self.engine.dialect.name)
        finished = _epoch_seconds(_c.finished_at, self.engine.dialect.name)
        in_sql = started is not None and finished is not None
        columns = (started, finished) if in_sql else (_c.started_at, _c.finished_at)
        stmt = select(_c.name, _c.status, *columns).where(
            _c.status.in_(list(statuses)), _c.started_at.is_not(None), _c.finished_at.is_not(None)
        )
        if names:
            stmt = stmt.where(_c.name.in_(list(names)))
        if since is not None:
            stmt = stmt.where(_c.created_at >= since)
        with self.engine.connect().execution_options(rqjobs_readonly=True, yield_per=batch) as conn:
            for name, status, start, end in conn.execute(stmt):
                if in_sql:  # to the millisecond: SQLite's julianday is exact to about 0.1 ms only
                    yield name, status, round(float(start), 3), round(float(end), 3)
                else:
                    yield name, status, start.timestamp(), end.timestamp()


def _epoch_seconds(column: Any, dialect: str) -> Any | None:
    """SQL for a stored (naive UTC) timestamp as Unix seconds, where the dialect is known."""
    if dialect == "sqlite":
        return (func.julianday(column) - _UNIX_EPOCH_JULIAN_DAY) * 86400.0
    if dialect == "postgresql":
        return func.extract("epoch", column)
    if dialect in ("mysql", "mariadb"):  # TIMESTAMPDIFF ignores the session's time zone
        return func.timestampdiff(literal_column("MICROSECOND"), literal("1970-01-01 00:00:00"), column) / 1e6
    return None


_UNIX_EPOCH_JULIAN_DAY = 2440587.5
