"""Dependencies in SQL: the ``task_dependencies`` edges and the transitions of a ``deferred`` row.

A child enqueued ``--after`` its parents is inserted ``deferred`` together with its edges,
in one transaction, so a child never exists without them. Everything that decides what
the child becomes (enqueued, canceled, deferred again) is in
:mod:`rqjobs.dependencies`; this module only reads the edges and makes the conditional
updates, like the rest of the store (docs/ARCHITECTURE.md, "Dependencies").

:class:`DependencyOps` is mixed into :class:`~rqjobs.store.repository.TaskStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, exists, insert, select
from sqlalchemy.exc import IntegrityError

from rqjobs.exceptions import InvalidDependency
from rqjobs.status import TaskStatus
from rqjobs.store.models import Task, task_dependencies_table, utcnow
from rqjobs.store.records import TaskRecord, row_values
from rqjobs.store.retry import run_with_retry

T = TypeVar("T")

_tasks = Task.__table__
_c = _tasks.c
_deps = task_dependencies_table
_d = _deps.c

#: a child may wait for this many parents at most (one `IN (...)` list, a readable log line)
MAX_PARENTS = 100

_DEFERRED = TaskStatus.DEFERRED.value
_CANCELED = TaskStatus.CANCELED.value
_REFUSING = (TaskStatus.FAILED.value, TaskStatus.CANCELED.value)


def parents_by_child(conn: Connection, child_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """child id -> its parent ids, ascending (children with none are left out)."""
    if not child_ids:
        return {}
    stmt = select(_d.task_id, _d.parent_id).where(_d.task_id.in_(list(child_ids))).order_by(_d.parent_id)
    out: dict[int, list[int]] = {}
    for child, parent in conn.execute(stmt):
        out.setdefault(int(child), []).append(int(parent))
    return {child: tuple(parents) for child, parents in out.items()}


def refuse_bad_parents(conn: Connection, parent_ids: Sequence[int]) -> None:
    """Raise :class:`InvalidDependency` for a parent that does not exist, failed or was canceled."""
    found = {
        int(i): str(s) for i, s in conn.execute(select(_c.id, _c.status).where(_c.id.in_(list(parent_ids))))
    }
    missing = [p for p in parent_ids if p not in found]
    if missing:
        raise InvalidDependency(f"--after names no task: {', '.join(f'#{p}' for p in missing)}")
    ended = [f"#{p} {found[p]}" for p in parent_ids if found[p] in _REFUSING]
    if ended:
        raise InvalidDependency(
            f"parent {', '.join(ended)}: this task could never run (retry the parent first, or leave it out)"
        )


def no_waiting_dependents() -> ColumnElement[bool]:
    """``prune``'s guard: a row that a ``deferred`` row still waits for is kept.

    Deleting it would leave the dependent unable to tell whether its parent finished.
    """
    child = _tasks.alias("waiting_child")
    return ~exists(
        select(_d.task_id)
        .select_from(_deps.join(child, child.c.id == _d.task_id))
        .where(_d.parent_id == _c.id, child.c.status == _DEFERRED)
    )


def delete_edges(conn: Connection, child_ids: Sequence[int]) -> None:
    """The edges of deleted rows go with them (``prune``)."""
    if not child_ids:
        return
    # most rows have no edge: look first (primary key), so a prune batch without dependencies
    # costs no second DELETE
    if conn.execute(select(_d.task_id).where(_d.task_id.in_(list(child_ids))).limit(1)).first() is not None:
        conn.execute(delete(_deps).where(_d.task_id.in_(list(child_ids))))


def with_parents(conn: Connection, records: list[TaskRecord]) -> list[TaskRecord]:
    """The records with ``after`` filled in: one indexed read for the whole list."""
    found = parents_by_child(conn, [r.id for r in records])
    return [replace(r, after=found[r.id]) if r.id in found else r for r in records]


class DependencyOps:
    """Mixed into :class:`~rqjobs.store.repository.TaskStore`."""

    engine: Engine
    retry_s: float

    def _dep_read(self, what: str, work: Callable[[Connection], T]) -> T:
        return run_with_retry(self.engine, work, budget_s=self.retry_s, what=what, readonly=True)

    # -- the child's row and edges ------------------------------------------------------

    def insert_after(self, parents: Sequence[int], **columns: Any) -> TaskRecord:
        """Insert a ``deferred`` row and its edges in one transaction; returns its snapshot.

        Refused (:class:`~rqjobs.exceptions.InvalidDependency`, nothing written) when a
        parent does not exist or already failed or was canceled: such a child could never
        run. The check is made in the same transaction as the insert, so the refusal and
        the row are never both there; a parent that ends just after the commit is the
        caller's to settle (:func:`rqjobs.dependencies.settle_task`).
        """
        parent_ids = sorted(set(int(p) for p in parents))
        values = row_values(**columns, status=_DEFERRED)
        values["enqueued_at"] = None  # a deferred row has no job until its parents finished
        name, description, now = values["name"], values["description"], values["created_at"]

        unique_key = values.get("unique_key")
        # a deferred row holds its unique key as any live row does (rqjobs.store.unique)
        stmt = insert(_tasks) if unique_key is None else insert(_tasks).values(unique_active=unique_key)

        def work(conn: Connection) -> int:
            refuse_bad_parents(conn, parent_ids)
            key = conn.execute(stmt, values).inserted_primary_key
            assert key is not None
            task_id = int(key[0])
            conn.execute(insert(_deps), [{"task_id": task_id, "parent_id": p} for p in parent_ids])
            return task_id

        def landed(conn: Connection) -> int | None:
            stmt = (
                select(_c.id)
                .where(_c.created_at == now, _c.name == name, _c.description == description)
                .order_by(_c.id.desc())
                .limit(1)
            )
            found = conn.execute(stmt).scalar()
            return None if found is None else int(found)

        try:
            task_id = run_with_retry(
                self.engine, work, budget_s=self.retry_s, what=f"record a new {name} task", verify=landed
            )
        except IntegrityError as exc:
            from rqjobs.store.unique import is_key_clash

            holder: TaskRecord | None = (
                self.live_holder(unique_key)  # type: ignore[attr-defined]  # UniqueWrites, on TaskStore
                if unique_key and is_key_clash(exc)
                else None
            )
            if holder is None:
                raise
            return replace(holder, existing=True)  # a live row holds the key: nothing written
        return TaskRecord(id=task_id, **values, after=tuple(parent_ids))

    def check_parents(self, parents: Sequence[int]) -> None:
        """The refusals of :meth:`insert_after`, without writing (``--dry-run``)."""
        parent_ids = sorted(set(int(p) for p in parents))

        self._dep_read("check the parent tasks", lambda conn: refuse_bad_parents(conn, parent_ids))

    # -- reads ------------------------------------------------------------------------

    def children_of(self, parent_id: int) -> list[tuple[int, str]]:
        """``(child id, child status)`` of every task waiting for (or made to wait for) this one."""
        stmt = (
            select(_d.task_id, _c.status)
            .join(_tasks, _c.id == _d.task_id)
            .where(_d.parent_id == parent_id)
            .order_by(_d.task_id)
        )
        return self._dep_read(
            f"read the dependents of task {parent_id}",
            lambda conn: [(int(i), str(s)) for i, s in conn.execute(stmt)],
        )

    def parent_states(self, child_id: int) -> list[tuple[int, str | None]]:
        """``(parent id, its status)`` for each parent; None for a parent no longer in the table."""
        parent = _tasks.alias("parent")
        stmt = (
            select(_d.parent_id, parent.c.status)
            .outerjoin(parent, parent.c.id == _d.parent_id)
            .where(_d.task_id == child_id)
            .order_by(_d.parent_id)
        )
        return self._dep_read(
            f"read the parents of task {child_id}",
            lambda conn: [(int(p), None if s is None else str(s)) for p, s in conn.execute(stmt)],
        )

    def deferred_parent_states(self) -> dict[int, list[tuple[int, str | None]]]:
        """Every ``deferred`` row -> its parents' statuses (reconcile's dependency pass)."""
        child, parent = _tasks.alias("child"), _tasks.alias("parent")
        stmt = (
            select(_d.task_id, _d.parent_id, parent.c.status)
            .join(child, child.c.id == _d.task_id)
            .outerjoin(parent, parent.c.id == _d.parent_id)
            .where(child.c.status == _DEFERRED)
            .order_by(_d.task_id, _d.parent_id)
        )

        def work(conn: Connection) -> dict[int, list[tuple[int, str | None]]]:
            out: dict[int, list[tuple[int, str | None]]] = {}
            for task_id, parent_id, status in conn.execute(stmt):
                out.setdefault(int(task_id), []).append((int(parent_id), status))
            return out

        return self._dep_read("list deferred tasks", work)

    def deferred_without_parents(self) -> list[int]:
        """``deferred`` rows with no edge at all (cannot happen through rqjobs; reconcile frees them)."""
        stmt = (
            select(_c.id)
            .outerjoin(_deps, _d.task_id == _c.id)
            .where(and_(_c.status == _DEFERRED, _d.task_id.is_(None)))
            .order_by(_c.id)
        )
        return self._dep_read(
            "list deferred tasks", lambda conn: [int(i) for i in conn.execute(stmt).scalars()]
        )

    def parents_requeued_after_cascade(self) -> list[int]:
        """Parents that are live again (retried) since a child of theirs was canceled.

        A child canceled when its parent failed must not stay canceled once the parent is
        retried; the retry restores it, and this finds the ones a crash in between left
        behind: a ``canceled`` child whose parent, not final, was enqueued again after the
        cancel. A parent that has finished since is left out: the worker that ran it
        restored its children then, and a pair that matched forever would cost every pass.
        """
        child, parent = _tasks.alias("child"), _tasks.alias("parent")
        stmt = (
            select(_d.parent_id)
            .join(child, child.c.id == _d.task_id)
            .join(parent, parent.c.id == _d.parent_id)
            .where(
                child.c.status == _CANCELED,
                parent.c.status.not_in([*_REFUSING, TaskStatus.FINISHED.value]),
                parent.c.enqueued_at > child.c.finished_at,
            )
            .distinct()
        )
        return self._dep_read(
            "list retried parents", lambda conn: sorted(int(i) for i in conn.execute(stmt).scalars())
        )

    # -- transitions of a child -------------------------------------------------------

    def _child_update(
        self, task_id: int, expect: dict[str, Any], values: dict[str, Any], log_entry: str
    ) -> bool:
        update_if: Callable[..., bool] = self.update_if  # type: ignore[attr-defined]
        return update_if(task_id, expect, values, log_entry=log_entry)

    def mark_released(self, task_id: int, log_entry: str) -> bool:
        """deferred -> queued: every parent finished; the job follows, after this commit."""
        return self._child_update(
            task_id,
            {"status": _DEFERRED},
            {"status": TaskStatus.QUEUED.value, "enqueued_at": utcnow()},
            log_entry,
        )

    def mark_dependency_canceled(self, task_id: int, log_entry: str) -> bool:
        """deferred -> canceled: a parent failed for good or was canceled."""
        return self._child_update(
            task_id,
            {"status": _DEFERRED},
            # unique_active: a final row holds no unique key (migration 0005)
            {"status": _CANCELED, "finished_at": utcnow(), "progress_message": None, "unique_active": None},
            log_entry,
        )

    def mark_deferred_again(self, task_id: int, canceled_at: datetime | None, log_entry: str) -> bool:
        """canceled -> deferred, only if the row is still the cancel we decided from."""
        return self._child_update(
            task_id,
            {"status": _CANCELED, "finished_at": canceled_at},
            {"status": _DEFERRED, "finished_at": None, "enqueued_at": None, "progress": 0},
            log_entry,
        )
