"""SQL behind the web dashboard: searching rows a page at a time, and counts over time windows.

Pages are keyset-paginated by id (``WHERE id < :before ORDER BY id DESC LIMIT n``), never
by OFFSET and never with a total count, so the tasks page costs the same on a million rows
as on a thousand: the database walks an index from one end and stops after a page.
``status:``, ``task:`` and ``queue:`` have indexes that lead with the column and end with
the id (``status, id``; ``name, id`` and ``queue, id`` from migration 0004), so a search
with one of them walks that index in id order too. ``schedule:`` has ``schedule, id``
(migration 0006): the unique index ``uq_tasks_schedule_tick`` leads with the schedule too,
but orders its rows by tick, which left SQLite sorting a busy schedule's rows or scanning
the whole table for a rare one. Several values of one of these qualifiers (``task:a,b``)
run as one index walk per value, merged by id (:func:`_split`). ``since:`` becomes an id bound (the
smallest id created since then, read from the ``created_at`` index when the window holds
few rows), so a window with no rows in it costs one index probe instead of a walk through
every older row.

Free text on the description (``LIKE '%...%'``) and ``worker:`` (no index: the column
changes on every run) are filters no index serves. Without an indexed qualifier beside
them, those searches look at most :data:`SCAN_WINDOW` ids per page and, when the page is
not full, say where they stopped (``scanned_down_to``) so the next request continues from
there. Each request thus costs the same whatever the table's size; a rare phrase in a huge
table takes several clicks instead of one slow page.

:class:`SearchReads` is mixed into :class:`~rqjobs.store.repository.TaskStore`, like
:class:`~rqjobs.store.aggregates.AggregateReads`; every read is retried the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select, true

from rqjobs.hostpid import split_host_pid
from rqjobs.search import TaskQuery
from rqjobs.status import FINAL, WAITING, TaskStatus
from rqjobs.store.aggregates import _epoch_seconds
from rqjobs.store.models import Task
from rqjobs.store.records import TaskRecord, record_of
from rqjobs.store.retry import run_with_retry

T = TypeVar("T")
_table = Task.__table__
_c = _table.c


#: ids a search that no index serves looks at per request
SCAN_WINDOW = 50_000
#: a ``since:`` window with at most this many rows turns into an id bound
SINCE_BOUND_ROWS = 10_000


@dataclass(frozen=True)
class TaskPage:
    """One page of a search, newest first, with the ids that continue it either way."""

    rows: list[TaskRecord]
    #: pass as ``before_id`` for the next (older) page; None on the last page
    older_than: int | None
    #: pass as ``after_id`` for the previous (newer) page; None on the first page
    newer_than: int | None
    #: a windowed search (free text) stopped looking at this id, with older rows unseen
    scanned_down_to: int | None = None


def _needs_window(query: TaskQuery) -> bool:
    """True when no index narrows the search: free text or ``worker:`` alone."""
    if query.ids or query.names or query.statuses or query.queues or query.schedules:
        return False
    return bool(query.text or query.workers)


#: a qualifier with more values than this is searched in one statement, not one per value
MAX_SPLIT = 20
#: the qualifiers with a ``(column, id)`` index, as TaskQuery fields
_INDEXED = ("names", "queues", "schedules", "statuses")


def _split(query: TaskQuery) -> list[TaskQuery]:
    """The query as one query per value of a many-valued indexed qualifier, when no
    single-valued one can lead; or ``[query]``.

    ``task:a,b`` is ``name IN (a, b)``, and no index gives those rows in id order: SQLite
    scanned the whole table newest first (seconds on a million rows when the names are rare
    or absent), PostgreSQL and MariaDB collect every match and sort it. One value alone
    walks its ``(column, id)`` index and stops after a page; the pages are merged by id.
    """
    if query.ids:
        return [query]  # primary-key lookups already
    values = {name: getattr(query, name) for name in _INDEXED}
    if any(len(v) == 1 for v in values.values()):
        return [query]  # that index leads, in id order
    many = [name for name in _INDEXED if len(values[name]) > 1]
    if not many:
        return [query]
    field = min(many, key=lambda name: len(values[name]))
    if len(values[field]) > MAX_SPLIT:
        return [query]
    one: dict[str, Any] = {}
    parts = []
    for value in values[field]:
        one[field] = (value,)
        parts.append(replace(query, **one))
    return parts


def _is_process(worker: str) -> bool:
    return split_host_pid(worker) is not None


def _conditions(query: TaskQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.ids:
        where.append(_c.id.in_(list(query.ids)))
    if query.names:
        where.append(_c.name.in_(list(query.names)))
    if query.statuses:
        where.append(_c.status.in_(list(query.statuses)))
    if query.queues:
        where.append(_c.queue.in_(list(query.queues)))
    if query.schedules:
        where.append(_c.schedule.in_(list(query.schedules)))
    if query.workers:
        # "host:pid" is one process; "host" is every worker process on that machine
        where.append(
            or_(
                *(
                    _c.worker == w if _is_process(w) else _c.worker.startswith(f"{w}:", autoescape=True)
                    for w in query.workers
                )
            )
        )
    if query.since is not None:
        where.append(_c.created_at >= query.since)
    for word in query.text:
        where.append(_c.description.icontains(word, autoescape=True))
    return where


@dataclass(frozen=True)
class Window:
    """Runs that ended in ``buckets`` equal slices of time ending at ``until``."""

    since: datetime
    until: datetime
    bucket_s: float
    finished: list[int]
    failed: list[int]

    @property
    def total_finished(self) -> int:
        return sum(self.finished)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)

    @property
    def failure_rate(self) -> float | None:
        ended = self.total_finished + self.total_failed
        return self.total_failed / ended if ended else None


class SearchReads:
    """The dashboard's reads; mixed into :class:`~rqjobs.store.repository.TaskStore`."""

    engine: Engine
    #: how long a read keeps retrying while the database is unreachable (set by TaskStore)
    retry_s: float

    def _search_read(self, what: str, work: Callable[[Connection], T]) -> T:
        return run_with_retry(self.engine, work, budget_s=self.retry_s, what=what, readonly=True)

    def search(
        self,
        query: TaskQuery,
        *,
        limit: int = 50,
        before_id: int | None = None,
        after_id: int | None = None,
    ) -> TaskPage:
        """One page of rows matching ``query``: the newest, or those just older than ``before_id``
        (or just newer than ``after_id``)."""
        where: list[ColumnElement[bool]] = []
        newer_first = after_id is None
        if before_id is not None:
            where.append(_c.id < before_id)
        if after_id is not None:
            where.append(_c.id > after_id)
        order = _c.id.desc() if newer_first else _c.id.asc()
        parts = _split(query)

        def work(conn: Any) -> tuple[list[TaskRecord], int | None]:
            bounds = list(where)
            if query.since is not None:
                # the created_at index lists the window's ids; a short list bounds the walk by id
                # exactly (min() itself would walk the primary key from the oldest row instead)
                stmt = select(_c.id).where(_c.created_at >= query.since).limit(SINCE_BOUND_ROWS + 1)
                window = list(conn.execute(stmt).scalars())
                if not window:
                    return [], None
                if len(window) <= SINCE_BOUND_ROWS:
                    bounds.append(_c.id >= min(window))
            floor_id = None
            if _needs_window(query):
                if newer_first:
                    top = (
                        before_id
                        if before_id is not None
                        else (conn.execute(select(func.max(_c.id))).scalar() or 0) + 1
                    )
                    floor_id = max(top - SCAN_WINDOW, 0)
                    bounds.append(_c.id >= floor_id)
                else:
                    bounds.append(_c.id < after_id + SCAN_WINDOW)  # type: ignore[operator]
            # one extra row says whether another page follows, without counting
            found = []
            for part in parts:  # one part unless _split made one per value (disjoint rows)
                stmt = (
                    select(_table)
                    .where(and_(true(), *_conditions(part), *bounds))
                    .order_by(order)
                    .limit(limit + 1)
                )
                found += [record_of(r) for r in conn.execute(stmt)]
            if len(parts) > 1:
                found.sort(key=lambda r: r.id, reverse=newer_first)
            return found[: limit + 1], floor_id

        rows, floor_id = self._search_read("search tasks", work)
        more = len(rows) > limit
        rows = rows[:limit]
        if not newer_first:
            rows.reverse()
        # a window that ran out before the page filled: older rows may still match
        scanned = floor_id if (floor_id and not more and self._has_older(floor_id)) else None
        if not rows:
            return TaskPage(rows=[], older_than=None, newer_than=None, scanned_down_to=scanned)
        if newer_first:
            older = rows[-1].id if more else None
            newer = rows[0].id if before_id is not None else None
        else:
            older = rows[-1].id
            newer = rows[0].id if more else None
        return TaskPage(rows=rows, older_than=older, newer_than=newer, scanned_down_to=scanned)

    def _has_older(self, below_id: int) -> bool:
        stmt = select(_c.id).where(_c.id < below_id).limit(1)
        return self._search_read("look for older tasks", lambda conn: conn.execute(stmt).first() is not None)

    def matching_ids(
        self, query: TaskQuery, *, statuses: Sequence[str], limit: int
    ) -> tuple[list[int], bool]:
        """Ids of up to ``limit`` rows matching ``query`` that are in one of ``statuses``, newest
        first; and whether more match (bulk actions work through a search one batch at a time)."""
        wanted = tuple(s for s in statuses if not query.statuses or s in query.statuses)
        if not wanted:
            return [], False
        # the action's statuses become the query's, so _split can walk one index per value
        stmts = [
            select(_c.id).where(and_(true(), *_conditions(part))).order_by(_c.id.desc()).limit(limit + 1)
            for part in _split(replace(query, statuses=wanted))
        ]

        def work(conn: Any) -> list[int]:
            found = [int(i) for stmt in stmts for i in conn.execute(stmt).scalars()]
            return sorted(found, reverse=True)[: limit + 1]

        ids = self._search_read("list matching tasks", work)
        return ids[:limit], len(ids) > limit

    def progress_of(self, task_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The few columns a live page updates, for the given ids (those that exist)."""
        if not task_ids:
            return []
        stmt = select(_c.id, _c.status, _c.progress, _c.progress_message, _c.attempts).where(
            _c.id.in_(list(task_ids))
        )
        return self._search_read(
            "read task progress", lambda conn: [dict(row._mapping) for row in conn.execute(stmt)]
        )

    def counts_by_queue_and_status(self, *, ended_since: datetime) -> dict[str, dict[str, int]]:
        """queue -> status -> rows: every waiting, deferred and running row, and the rows that ended
        (finished, failed, canceled) since ``ended_since``.

        Both halves read an index that starts with the status (``status, id`` and ``status,
        finished_at``), so the cost follows the backlog and the recent runs, not the table:
        grouping the whole table by queue took over a second on a million SQLite rows.
        """
        active = [*WAITING, TaskStatus.DEFERRED.value, TaskStatus.RUNNING.value]
        # status first in GROUP BY: grouped by queue first, SQLite walked the whole (queue, id) index
        queries = [
            select(_c.queue, _c.status, func.count())
            .where(_c.status.in_(active))
            .group_by(_c.status, _c.queue),
            select(_c.queue, _c.status, func.count())
            .where(_c.status.in_(list(FINAL)), _c.finished_at >= ended_since)
            .group_by(_c.status, _c.queue),
        ]
        out: dict[str, dict[str, int]] = {}

        def work(conn: Any) -> None:
            for stmt in queries:
                for queue, status, n in conn.execute(stmt):
                    out.setdefault(queue, {})[status] = int(n)

        self._search_read("count tasks by queue", work)
        return out

    def ended_per_bucket(self, *, span: timedelta, buckets: int, now: datetime) -> Window:
        """Finished and failed runs per time slice over the last ``span``, bucketed in SQL.

        Reads the ``(status, finished_at)`` index over the window only: the cost follows the
        rows that ended in the window, not the table.
        """
        since = now - span
        bucket_s = span.total_seconds() / buckets
        dialect = self.engine.dialect.name
        ended = _epoch_seconds(_c.finished_at, dialect)
        statuses = [TaskStatus.FINISHED.value, TaskStatus.FAILED.value]
        where = and_(_c.status.in_(statuses), _c.finished_at >= since, _c.finished_at <= now)
        out = {status: [0] * buckets for status in statuses}
        if ended is None:  # an unknown dialect: bucket in Python
            stmt: Any = select(_c.status, _c.finished_at).where(where)

            def work(conn: Any) -> None:
                for status, finished_at in conn.execute(stmt):
                    slot = int((finished_at - since).total_seconds() // bucket_s)
                    out[status][min(max(slot, 0), buckets - 1)] += 1

        else:
            slot_expr = func.floor((ended - since.timestamp()) / bucket_s)
            stmt = select(_c.status, slot_expr, func.count()).where(where).group_by(_c.status, slot_expr)

            def work(conn: Any) -> None:
                for status, slot, n in conn.execute(stmt):
                    out[status][min(max(int(slot), 0), buckets - 1)] += int(n)

        self._search_read("count runs over time", work)
        return Window(
            since=since,
            until=now,
            bucket_s=bucket_s,
            finished=out[TaskStatus.FINISHED.value],
            failed=out[TaskStatus.FAILED.value],
        )


__all__ = ["SearchReads", "TaskPage", "Window"]
