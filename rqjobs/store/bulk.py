"""Bulk inserts (``enqueue_many``): every row of a batch in ONE transaction.

The ids come back from one ``INSERT ... RETURNING id`` run as SQLAlchemy's
"insertmanyvalues" (a few multi-row INSERTs, not one statement per row), ordered like
the input (``sort_by_parameter_order``); SQLite (3.35+), PostgreSQL and MariaDB (10.5+)
all support it. Unique keys follow :mod:`rqjobs.store.unique`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rqjobs.exceptions import DatabaseError
from rqjobs.status import WAITING, TaskStatus
from rqjobs.store.models import Task, utcnow
from rqjobs.store.records import TaskRecord, record_of, row_values
from rqjobs.store.retry import run_with_retry
from rqjobs.store.unique import INSERT_ATTEMPTS, UniqueKeyTaken, is_key_clash

_table = Task.__table__
_c = _table.c


class BulkWrites:
    """Mixed into :class:`~rqjobs.store.repository.TaskStore`: batch inserts and their undo."""

    engine: Engine
    retry_s: float

    def insert_many(self, rows: Sequence[dict[str, Any]]) -> list[TaskRecord]:
        """Insert every row in ONE transaction; returns their records, in order.

        ``rows`` are :func:`row_values` keyword arguments. A row with a ``unique_key``
        whose key a live row already holds (or an earlier row of this batch) is not
        inserted: its place in the result is the holder, with ``existing`` True. If a
        concurrent enqueue takes a key between the look-up and the insert, the unique
        index refuses the insert, the whole transaction rolls back, and the batch is tried
        again (it then sees that holder): all rows or none, never a half batch.
        """
        if not rows:
            return []
        queued, scheduled = TaskStatus.QUEUED.value, TaskStatus.SCHEDULED.value
        prepared = [
            # the status given, so row_values need not look an Enum's value up 10,000 times
            row_values(**{"status": scheduled if columns.get("scheduled_for") else queued, **columns})
            for columns in rows
        ]
        now = prepared[0]["created_at"]
        for values in prepared:  # one batch, one time: what `landed` below looks for
            values["created_at"] = values["enqueued_at"] = now
        name = prepared[0]["name"]
        keys = sorted({v["unique_key"] for v in prepared if v.get("unique_key")})
        returning = insert(_table).returning(_c.id, sort_by_parameter_order=True)

        def work(conn: Connection) -> list[TaskRecord]:
            holders: dict[str, TaskRecord] = {}
            for start in range(0, len(keys), 500):  # IN lists stay short
                chunk = keys[start : start + 500]
                for row in conn.execute(select(_table).where(_c.unique_active.in_(chunk))):
                    record = record_of(row)
                    holders[str(row._mapping["unique_active"])] = replace(record, existing=True)
            slots: list[TaskRecord | int] = []  # a record (existing) or an index into `fresh`
            fresh: list[dict[str, Any]] = []
            fresh_values: list[dict[str, Any]] = []  # the same, without the internal column
            claimed: dict[str, int] = {}
            for values in prepared:
                key = values.get("unique_key")
                if key and key in holders:
                    slots.append(holders[key])
                elif key and key in claimed:
                    slots.append(-1 - claimed[key])  # a duplicate within the batch: the first one
                else:
                    if key:
                        claimed[key] = len(fresh)
                    slots.append(len(fresh))
                    fresh.append({**values, "unique_active": key or None})
                    fresh_values.append(values)
            if not fresh:
                ids: list[int] = []
            elif conn.dialect.name == "sqlite":
                ids = _sqlite_insert(conn, fresh)
            else:
                ids = [int(i) for i in conn.execute(returning, fresh).scalars()]
            if len(ids) != len(fresh):
                raise DatabaseError(f"the database returned {len(ids)} ids for {len(fresh)} new rows")
            made = [TaskRecord(id=i, **v) for i, v in zip(ids, fresh_values, strict=True)]
            out: list[TaskRecord] = []
            for slot in slots:
                if isinstance(slot, TaskRecord):
                    out.append(slot)
                elif slot >= 0:
                    out.append(made[slot])
                else:
                    out.append(replace(made[-1 - slot], existing=True))
            return out

        def landed(conn: Connection) -> list[TaskRecord] | None:
            # the COMMIT's reply was lost. If the batch landed, its rows are queued without
            # jobs: say so rather than insert it twice (reconcile's outbox enqueues them)
            found = (
                conn.execute(select(_c.id).where(_c.created_at == now, _c.name == name).order_by(_c.id))
                .scalars()
                .all()
            )
            if not found:
                return None
            raise DatabaseError(
                f"the database lost the reply to committing {len(prepared)} new tasks; "
                f"tasks {found[0]}..{found[-1]} were recorded and reconcile will enqueue them"
            )

        for _ in range(INSERT_ATTEMPTS):
            try:
                return run_with_retry(
                    self.engine,
                    work,
                    budget_s=self.retry_s,
                    what=f"record {len(prepared)} new tasks",
                    verify=landed,
                )
            except IntegrityError as exc:
                if not is_key_clash(exc):
                    raise
        raise UniqueKeyTaken(keys[0] if keys else "?", None)

    def mark_many_enqueue_failed(self, task_ids: Sequence[int], log_entry: str) -> int:
        """A batch's jobs never reached Redis: its rows must not stay queued (one UPDATE)."""
        if not task_ids:
            return 0
        stmt = (
            update(_table)
            .where(_c.id.in_(list(task_ids)), _c.status.in_(list(WAITING)))
            .values(
                status=TaskStatus.FAILED.value,
                finished_at=utcnow(),
                unique_active=None,
                log=func.coalesce(_c.log, "") + log_entry,
            )
        )
        return run_with_retry(
            self.engine,
            lambda conn: int(conn.execute(stmt).rowcount),
            budget_s=self.retry_s,
            what=f"fail {len(task_ids)} tasks that were not enqueued",
        )


def _sqlite_insert(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """SQLite: the driver's own ``executemany`` (in C), then the ids from ``last_insert_rowid()``.

    Twice as fast as a RETURNING per multi-row batch. The ids are consecutive: this
    transaction began IMMEDIATE (it holds SQLite's one write lock) and the table is
    AUTOINCREMENT, so each row takes the next id; the count below checks it all the same.
    """
    dialect = conn.dialect
    first_row = rows[0]
    fixed: dict[str, Any] = {}  # one value for the whole batch (name, queue, times...): converted once
    varying: list[str] = []
    for name, value in first_row.items():
        if name in _PER_ROW or [row[name] for row in rows].count(value) != len(rows):
            varying.append(name)
        else:
            proc = _table.c[name].type.bind_processor(dialect)
            fixed[name] = value if proc is None else proc(value)
    calls = [_table.c[name].type.bind_processor(dialect) or _same for name in varying]
    head = tuple(fixed.values())
    params = [
        head + tuple(call(row[name]) for call, name in zip(calls, varying, strict=True)) for row in rows
    ]
    names = [*fixed, *varying]
    sql = f"INSERT INTO tasks ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    conn.exec_driver_sql(sql, params)
    last = int(conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one())
    first = last - len(rows) + 1
    found = conn.execute(
        select(func.count()).select_from(_table).where(_c.id.between(first, last))
    ).scalar_one()
    if found != len(rows):
        raise DatabaseError(f"the batch's ids are not consecutive ({found} rows in {first}..{last})")
    return list(range(first, last + 1))


#: the columns that differ from row to row in a batch of one task
_PER_ROW = frozenset({"kwargs", "unique_key", "unique_active"})


def _same(value: Any) -> Any:
    return value


__all__ = ["BulkWrites"]
