"""Reads and transitions of task rows.

Every transition is one conditional ``UPDATE ... WHERE id = ? AND status IN (...)``:
idempotent, race-free between processes, and cheap. The returned boolean says whether
this caller made the change; a late or duplicate writer changes nothing.

SQLAlchemy Core, not the ORM, on these paths: they run once or twice per job and the
ORM's unit of work costs several times more per statement (bench/enqueue.py measures it).

Every read and write goes through :func:`rqjobs.store.retry.run_with_retry`: a database
that is unreachable for a few seconds (a restart, a network blip, SQLite's write lock)
delays the caller by up to ``retry_s`` instead of losing the update; past that, the
caller gets a :class:`~rqjobs.exceptions.DatabaseError` that says what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from rqjobs import defaults
from rqjobs.status import FINAL, RETRYABLE, WAITING, TaskStatus
from rqjobs.store.aggregates import AggregateReads
from rqjobs.store.bulk import BulkWrites
from rqjobs.store.dependencies import DependencyOps, delete_edges, no_waiting_dependents, with_parents
from rqjobs.store.models import Task, utcnow
from rqjobs.store.records import TaskRecord, attempt_log_entry, record_of, row_values
from rqjobs.store.retry import is_transient, run_with_retry, short_reason
from rqjobs.store.search import SearchReads
from rqjobs.store.unique import RESTORE, UniqueKeyTaken, UniqueWrites, is_key_clash, key_change
from rqjobs.store.updates import landed_check, unique_values, update_statement

log = logging.getLogger("rqjobs.store")
T = TypeVar("T")

_table = Task.__table__
_c = _table.c


_INSERT = insert(_table)


def clip_progress_message(message: str | None) -> str | None:
    """A progress message the column holds: cut to its length, lone surrogates replaced.

    Progress never fails a task, so an over-long or unencodable message is shortened,
    not refused (PostgreSQL and MariaDB would raise a DataError, SQLite would store it).
    """
    if message is None:
        return None
    text = str(message).encode("utf-8", "replace").decode("utf-8")
    limit = defaults.PROGRESS_MESSAGE_MAX_CHARS
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TaskStore(AggregateReads, SearchReads, DependencyOps, UniqueWrites, BulkWrites):
    """Row operations on one database. Cheap to construct; the engine is shared."""

    def __init__(self, engine: Engine, *, retry_s: float = defaults.DB_RETRY_S) -> None:
        self.engine = engine
        #: how long a read or write keeps retrying while the database is unreachable
        self.retry_s = retry_s

    def _write(
        self,
        what: str,
        work: Callable[[Connection], T],
        verify: Callable[[Connection], T | None] | None = None,
        *,
        single_statement: bool = False,
    ) -> T:
        return run_with_retry(
            self.engine,
            work,
            budget_s=self.retry_s,
            what=what,
            verify=verify,
            single_statement=single_statement,
        )

    def _read(self, what: str, work: Callable[[Connection], T]) -> T:
        return run_with_retry(self.engine, work, budget_s=self.retry_s, what=what, readonly=True)

    # -- writes ---------------------------------------------------------------------

    def insert(self, **columns: Any) -> TaskRecord:
        """Insert and commit a new row; returns its snapshot (no re-read).

        ``columns`` are :func:`~rqjobs.store.records.row_values`' keyword arguments (name,
        description, queue, args, kwargs, timeout_s, and optionally the rest).
        """
        values = row_values(**columns)
        name, description, now = values["name"], values["description"], values["created_at"]

        def work(conn: Connection) -> int:
            key = conn.execute(_INSERT, values).inserted_primary_key
            assert key is not None  # an INSERT always has one
            return int(key[0])

        def landed(conn: Connection) -> int | None:
            # an earlier attempt's COMMIT lost its reply: find that row rather than add a
            # second one (created_at carries microseconds, so the match is this very call)
            stmt = (
                select(_c.id)
                .where(_c.created_at == now, _c.name == name, _c.description == description)
                .order_by(_c.id.desc())
                .limit(1)
            )
            found = conn.execute(stmt).scalar()
            return None if found is None else int(found)

        task_id = self._write(f"record a new {name} task", work, landed, single_statement=True)
        return TaskRecord(id=task_id, **values)

    def _transition(
        self,
        task_id: int,
        from_statuses: Iterable[str],
        *,
        log_entry: str | None = None,
        bump_attempts: bool = False,
        strict_key: bool = False,
        **values: Any,
    ) -> bool:
        """One conditional UPDATE; True when this call moved the row (matched it, for MySQL too).

        SQLAlchemy's MySQL dialects connect with CLIENT_FOUND_ROWS, so ``rowcount`` counts
        matched rows there as everywhere else: an update that rewrites equal values is
        still "done", not mistaken for a refused transition.

        The same UPDATE keeps ``unique_active`` right (:mod:`rqjobs.store.unique`). A row
        leaving a final status whose key another live row now holds raises
        :class:`UniqueKeyTaken` when ``strict_key`` (an operator's retry), and otherwise
        moves without its key (a re-delivered job must still be recorded as running).
        """
        from_statuses = tuple(from_statuses)
        unique = key_change(values.get("status"), from_statuses)
        try:
            return self._transition_once(task_id, from_statuses, log_entry, bump_attempts, unique, values)
        except IntegrityError as exc:
            if unique != RESTORE or not is_key_clash(exc):
                raise
            if strict_key:
                record = self.get(task_id)
                key = record.unique_key if record else "?"
                raise UniqueKeyTaken(key or "?", self.live_holder(key) if key else None) from None
            return self._transition_once(task_id, from_statuses, log_entry, bump_attempts, None, values)

    def _transition_once(
        self,
        task_id: int,
        from_statuses: tuple[str, ...],
        log_entry: str | None,
        bump_attempts: bool,
        unique: str | None,
        values: dict[str, Any],
    ) -> bool:
        stmt = update_statement(
            from_statuses, tuple(sorted(values)), log_entry is not None, bump_attempts, unique
        )
        params = {f"v_{key}": value for key, value in values.items()}
        params["task_id"] = task_id
        if log_entry is not None:
            params["log_entry"] = log_entry

        def work(conn: Connection) -> bool:
            return conn.execute(stmt, params).rowcount == 1

        status = values.get("status", "")
        return self._write(
            f"update task {task_id}" + (f" to {status}" if status else ""),
            work,
            landed_check(task_id, values, log_entry),
            single_statement=True,
        )

    def update_if(
        self,
        task_id: int,
        expect: Mapping[str, Any],
        values: Mapping[str, Any],
        *,
        log_entry: str | None = None,
    ) -> bool:
        """Write ``values`` only while every column in ``expect`` still holds its value.

        ``None`` in ``expect`` means ``IS NULL``. Reconcile decides from a snapshot (status,
        attempt, worker, enqueue time) and changes the row only if nobody moved it since;
        True when this call made the change.
        """
        conditions = [_c.id == task_id]
        for name, value in expect.items():
            conditions.append(_c[name].is_(None) if value is None else _c[name] == value)
        changes: dict[str, Any] = dict(values)
        if log_entry is not None:
            changes["log"] = func.coalesce(_c.log, "") + log_entry
        known = expect.get("status")
        unique = key_change(values.get("status"), None if known is None else (known,))
        changes.update(unique_values(unique))

        def work(conn: Connection) -> bool:
            return conn.execute(update(_table).where(*conditions).values(**changes)).rowcount == 1

        try:
            return self._write(
                f"update task {task_id}",
                work,
                landed_check(task_id, dict(values), log_entry),
                single_statement=True,
            )
        except IntegrityError as exc:
            if unique != RESTORE or not is_key_clash(exc):
                raise
            changes.pop("unique_active")  # another live row holds the key: move without it
            return self._write(
                f"update task {task_id}",
                work,
                landed_check(task_id, dict(values), log_entry),
                single_statement=True,
            )

    def mark_running(self, task_id: int, worker: str) -> bool:
        """A run starts: ``attempts`` + 1, progress 0. Refused for finished and canceled rows.

        A ``running`` or ``failed`` row is taken over: that is a re-delivery of a job
        whose earlier run died (delivery is at-least-once), and the row must say it runs.
        """
        return self._transition(
            task_id,
            (*WAITING, TaskStatus.RUNNING.value, TaskStatus.FAILED.value),
            status=TaskStatus.RUNNING.value,
            bump_attempts=True,
            progress=0,
            progress_message=None,
            started_at=utcnow(),
            finished_at=None,
            scheduled_for=None,
            worker=worker,
        )

    def mark_finished(self, task_id: int, result: Any, *, progress_message: str | None = None) -> bool:
        """Success: the result, progress 100, and the last progress message held back, if any."""
        extra: dict[str, Any] = (
            {"progress_message": clip_progress_message(progress_message)}
            if progress_message is not None
            else {}
        )
        return self._transition(
            task_id,
            (TaskStatus.RUNNING.value,),
            status=TaskStatus.FINISHED.value,
            result=result,
            progress=100,
            finished_at=utcnow(),
            **extra,
        )

    def mark_attempt_failed(
        self,
        task_id: int,
        log_entry: str,
        *,
        retry_at: datetime | None = None,
        will_retry: bool = False,
        from_statuses: Iterable[str] = (TaskStatus.RUNNING.value,),
        progress: int | None = None,
        progress_message: str | None = None,
    ) -> bool:
        """A run failed: back to queued/scheduled when a retry follows, else failed.

        ``progress`` (and its message), when the task reported any: the value the row
        keeps, so it agrees with RQ's ``job.meta``; else 0 when a retry follows, 100 when not.
        """
        now = utcnow()
        if will_retry:
            status = TaskStatus.SCHEDULED if retry_at else TaskStatus.QUEUED
            extra: dict[str, Any] = {"scheduled_for": retry_at, "enqueued_at": now, "finished_at": None}
        else:
            status = TaskStatus.FAILED
            extra = {"finished_at": now}
        if progress is not None and progress_message is not None:
            extra["progress_message"] = clip_progress_message(progress_message)
        return self._transition(
            task_id,
            from_statuses,
            status=status.value,
            log_entry=log_entry,
            # a row waiting for its next attempt starts again from 0; a failed one ended
            progress=(0 if will_retry else 100) if progress is None else progress,
            **extra,
        )

    def mark_enqueue_failed(self, task_id: int, log_entry: str) -> bool:
        """The job never reached Redis: the row must not stay queued."""
        return self._transition(
            task_id,
            WAITING,
            status=TaskStatus.FAILED.value,
            log_entry=log_entry,
            finished_at=utcnow(),
        )

    def set_progress(self, task_id: int, progress: int, message: str | None) -> bool:
        """Best effort: progress is advisory, so an unreachable database skips this report
        (the next one, or the final state, catches up) instead of stalling the task."""
        stmt = (
            update(_table)
            .where(and_(_c.id == task_id, _c.status == TaskStatus.RUNNING.value))
            .values(progress=progress, progress_message=clip_progress_message(message), progress_at=utcnow())
        )
        try:
            with self.engine.begin() as conn:
                return conn.execute(stmt).rowcount == 1
        except SQLAlchemyError as exc:
            if not is_transient(exc, self.engine.dialect.name):
                raise
            log.warning("progress of task %s not recorded: %s", task_id, short_reason(exc))
            return False

    def mark_canceled(self, task_id: int, from_statuses: Iterable[str], log_entry: str) -> bool:
        return self._transition(
            task_id,
            from_statuses,
            status=TaskStatus.CANCELED.value,
            log_entry=log_entry,
            finished_at=utcnow(),
        )

    def mark_requeued(
        self,
        task_id: int,
        log_entry: str,
        *,
        scheduled_for: datetime | None = None,
        from_statuses: Iterable[str],
    ) -> bool:
        """A new attempt of a failed or canceled row (``rqjobs retry``).

        Raises :class:`UniqueKeyTaken` (nothing changed) when the row has a unique key that
        another live row holds now.
        """
        return self._transition(
            task_id,
            from_statuses,
            strict_key=True,
            status=(TaskStatus.SCHEDULED if scheduled_for else TaskStatus.QUEUED).value,
            log_entry=log_entry,
            progress=0,
            progress_message=None,
            result=None,
            enqueued_at=utcnow(),
            scheduled_for=scheduled_for,
            finished_at=None,
        )

    def delete_older_than(
        self, cutoff: datetime, statuses: Sequence[str] = FINAL, batch: int = 1000, dry_run: bool = False
    ) -> int:
        """Delete final rows created before ``cutoff`` in batches; returns how many.

        A row a ``deferred`` task still waits for is kept, and a deleted row's
        dependency edges go with it.
        """
        where = and_(_c.created_at < cutoff, _c.status.in_(list(statuses)), no_waiting_dependents())
        if dry_run:
            return self._read(
                "count old tasks",
                lambda conn: int(
                    conn.execute(select(func.count()).select_from(_table).where(where)).scalar_one()
                ),
            )

        def one_batch(conn: Connection) -> int:
            ids = conn.execute(select(_c.id).where(where).limit(batch)).scalars().all()
            delete_edges(conn, ids)
            return conn.execute(delete(_table).where(_c.id.in_(ids))).rowcount if ids else 0

        total = 0
        while True:
            # one short transaction per batch, so writers are never blocked for long
            deleted = self._write("delete old tasks", one_batch)
            if not deleted:
                return total
            total += deleted

    # -- reads ----------------------------------------------------------------------

    def unsettled(self, *, waiting_before: datetime, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The rows reconcile checks, oldest first: every ``running`` row, and every waiting
        row enqueued before ``waiting_before`` (or never). Only ``columns`` are read."""
        stmt = (
            select(*(_c[name] for name in columns))
            .where(
                or_(
                    _c.status == TaskStatus.RUNNING.value,
                    and_(
                        _c.status.in_(list(WAITING)),
                        or_(_c.enqueued_at < waiting_before, _c.enqueued_at.is_(None)),
                    ),
                )
            )
            .order_by(_c.id)
        )
        return self._read(
            "list unfinished tasks", lambda conn: [dict(row._mapping) for row in conn.execute(stmt)]
        )

    def get(self, task_id: int) -> TaskRecord | None:
        def work(conn: Connection) -> TaskRecord | None:
            row = conn.execute(select(_table).where(_c.id == task_id)).first()
            return with_parents(conn, [record_of(row)])[0] if row else None

        return self._read(f"read task {task_id}", work)

    def get_many(self, task_ids: Iterable[int]) -> list[TaskRecord]:
        ids = list(task_ids)
        if not ids:
            return []
        return self._read(
            "read tasks",
            lambda conn: with_parents(
                conn,
                [
                    record_of(row)
                    for row in conn.execute(select(_table).where(_c.id.in_(ids)).order_by(_c.id))
                ],
            ),
        )

    def find(
        self,
        *,
        statuses: Sequence[str] = (),
        names: Sequence[str] = (),
        since: datetime | None = None,
        limit: int | None = 20,
        after_id: int | None = None,
        oldest_first: bool = False,
        schedules: Sequence[str] = (),
    ) -> list[TaskRecord]:
        """Rows matching every filter given, newest first, ``limit`` applied in SQL."""
        stmt = select(_table)
        if statuses:
            stmt = stmt.where(_c.status.in_(list(statuses)))
        if names:
            stmt = stmt.where(_c.name.in_(list(names)))
        if schedules:
            stmt = stmt.where(_c.schedule.in_(list(schedules)))
        if since is not None:
            stmt = stmt.where(_c.created_at >= since)
        if after_id is not None:
            stmt = stmt.where(_c.id > after_id)
        stmt = stmt.order_by(_c.id.asc() if oldest_first else _c.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._read(
            "list tasks", lambda conn: with_parents(conn, [record_of(row) for row in conn.execute(stmt)])
        )

    def counts_by_status(
        self, *, names: Sequence[str] = (), since: datetime | None = None, schedules: Sequence[str] = ()
    ) -> dict[str, int]:
        stmt = select(_c.status, func.count()).group_by(_c.status)
        if names:
            stmt = stmt.where(_c.name.in_(list(names)))
        if schedules:
            stmt = stmt.where(_c.schedule.in_(list(schedules)))
        if since is not None:
            stmt = stmt.where(_c.created_at >= since)
        found = self._read("count tasks", lambda conn: {status: int(n) for status, n in conn.execute(stmt)})
        return {status: found.get(status, 0) for status in (s.value for s in TaskStatus)}

    def ids_with_status(self, statuses: Sequence[str], *, names: Sequence[str] = ()) -> list[int]:
        stmt = select(_c.id).where(_c.status.in_(list(statuses))).order_by(_c.id)
        if names:
            stmt = stmt.where(_c.name.in_(list(names)))
        return self._read("list task ids", lambda conn: list(conn.execute(stmt).scalars()))


__all__ = ["RETRYABLE", "TaskRecord", "TaskStore", "UniqueKeyTaken", "attempt_log_entry"]
