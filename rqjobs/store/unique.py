"""Unique tasks and bulk inserts: the SQL behind ``unique_key`` and ``enqueue_many``.

A row enqueued under a unique key carries it twice: ``unique_key`` (history, on the
:class:`~rqjobs.store.records.TaskRecord`) and ``unique_active`` (internal). The UNIQUE
index ``uq_tasks_unique_active`` (migration 0005) lets at most one row hold a key in
``unique_active``, so the database itself decides between two processes that enqueue
the same key at the same moment, on SQLite, PostgreSQL and MariaDB alike.

The invariant kept by every transition (:func:`key_change`, applied inside
``TaskStore._transition`` and ``TaskStore.update_if``): a row in a final status has
``unique_active`` NULL, set in the same UPDATE that makes it final; a row that leaves a
final status for a live one (``rqjobs retry``, a re-delivered job) takes its key back in
the same UPDATE, unless another live row holds it by then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from rqjobs.exceptions import DatabaseError
from rqjobs.status import FINAL, TaskStatus
from rqjobs.store.models import Task
from rqjobs.store.records import TaskRecord, record_of, row_values
from rqjobs.store.retry import run_with_retry

_table = Task.__table__
_c = _table.c

#: statuses in which a row holds its unique key (everything not final: waiting, deferred, running)
KEY_HOLDING: tuple[str, ...] = tuple(s.value for s in TaskStatus if s.value not in FINAL)

#: how many times an insert that lost a race tries again (the holder it lost to ended meanwhile)
INSERT_ATTEMPTS = 20

CLEAR = "clear"
RESTORE = "restore"


def key_change(to_status: str | None, from_statuses: Iterable[str] | None) -> str | None:
    """What an UPDATE to ``to_status`` must do to ``unique_active``.

    ``clear`` (set NULL) when the row becomes final; ``restore`` (copy ``unique_key``) when
    it may be leaving a final status for a live one (``from_statuses`` None: unknown, so
    assume it may); None when it stays live or no status is written.
    """
    if to_status is None:
        return None
    if to_status in FINAL:
        return CLEAR
    if from_statuses is None or any(s in FINAL for s in from_statuses):
        return RESTORE
    return None


def is_key_clash(exc: IntegrityError) -> bool:
    """Is this the unique-key index refusing a second live row (not another constraint)?"""
    text = str(getattr(exc, "orig", exc)).lower()
    return "unique_active" in text


class UniqueKeyTaken(DatabaseError):
    """Another live task holds this unique key."""

    def __init__(self, key: str, holder: TaskRecord | None) -> None:
        self.key = key
        self.holder = holder
        who = f"task {holder.id} ({holder.status})" if holder else "another live task"
        super().__init__(f"{who} holds the unique key {key!r}")


class UniqueWrites:
    """Mixed into :class:`~rqjobs.store.repository.TaskStore`: inserts that respect unique keys."""

    engine: Engine
    retry_s: float

    def live_holder(self, key: str) -> TaskRecord | None:
        """The live row holding ``key`` (queued, scheduled, deferred or running), if any."""

        def work(conn: Connection) -> TaskRecord | None:
            row = conn.execute(select(_table).where(_c.unique_active == key)).first()
            return None if row is None else record_of(row)

        return run_with_retry(
            self.engine, work, budget_s=self.retry_s, what="look up a unique key", readonly=True
        )

    def insert_unique(self, **columns: Any) -> tuple[TaskRecord, bool]:
        """Insert a row under ``columns["unique_key"]`` unless a live row holds that key.

        Returns ``(record, created)``: the new row and True, or the live holder and False
        (``record.existing`` is then True). The INSERT itself is the test: the unique index
        refuses it when the key is held, and then the holder is read; if the holder became
        final in between (no holder any more), the insert is tried again.
        """
        key = columns["unique_key"]
        values = row_values(**columns)
        name, description, now = values["name"], values["description"], values["created_at"]
        stmt = insert(_table).values(unique_active=key)

        def work(conn: Connection) -> int:
            inserted = conn.execute(stmt, values).inserted_primary_key
            assert inserted is not None
            return int(inserted[0])

        def landed(conn: Connection) -> int | None:
            found = conn.execute(
                select(_c.id).where(_c.created_at == now, _c.name == name, _c.description == description)
            ).scalar()
            return None if found is None else int(found)

        for _ in range(INSERT_ATTEMPTS):
            try:
                task_id = run_with_retry(
                    self.engine,
                    work,
                    budget_s=self.retry_s,
                    what=f"record a new {name} task",
                    verify=landed,
                )
                return TaskRecord(id=task_id, **values), True
            except IntegrityError as exc:
                if not is_key_clash(exc):
                    raise
            holder = self.live_holder(key)
            if holder is not None:
                return replace(holder, existing=True), False
        raise UniqueKeyTaken(key, None)


__all__ = ["KEY_HOLDING", "UniqueKeyTaken", "UniqueWrites", "is_key_clash", "key_change"]
