"""Dependencies (``--after``): the one rule that moves a ``deferred`` row and its dependents.

A task enqueued after others is ``deferred``: its row and its edges are committed, and no
job exists in Redis. What becomes of it follows its parents (docs/ARCHITECTURE.md,
"Dependencies"):

* every parent ``finished`` -> the row is ``queued`` (committed first), then its job is
  pushed: the outbox rule, so a crash in between leaves a queued row reconcile enqueues;
* a parent ``failed`` (no retries left: a failed attempt with retries left leaves the row
  queued or scheduled, not failed) or ``canceled``, or a parent deleted -> the row is
  ``canceled``, its log saying which parent and why, and so on down its own dependents;
* a parent live again (``rqjobs retry``, or a job RQ delivered again and that then
  finished) -> a dependent canceled *because of that parent* goes back to ``deferred``,
  saying so in its log, and follows the parent from there.

:func:`settle_dependents` applies this to whatever depends on a task whose status just
changed. It is called from every place a status changes: the worker after each job
(whatever recorded the outcome: the decorator, the worker's own handlers), ``rqjobs
cancel`` and ``rqjobs retry``, ``enqueue_task`` for the new child, and reconcile, whose
dependency pass (:func:`reconcile_dependencies`) covers a process that died between a
parent's end and the release. Every write is a conditional update from the state it was
decided from, so any number of processes may settle the same rows at once.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rqjobs.status import TaskStatus
from rqjobs.submit import submit_job

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime
    from rqjobs.store.repository import TaskRecord

__all__ = ["DependencyChange", "check_after", "reconcile_dependencies", "settle_dependents", "settle_task"]

log = logging.getLogger("rqjobs.dependencies")

_DEFERRED = TaskStatus.DEFERRED.value
_FINISHED = TaskStatus.FINISHED.value
_FAILED = TaskStatus.FAILED.value
_CANCELED = TaskStatus.CANCELED.value

#: the header of the log block a cascade cancel writes; a retry of that parent undoes it
_CASCADE = re.compile(r"^canceled: parent #(?P<parent>\d+) (?:failed|was canceled|no longer exists) at ")


@dataclass(frozen=True)
class DependencyChange:
    """One child this rule moved (or, in a dry run, would move)."""

    task_id: int
    from_status: str
    to_status: str
    reason: str


@dataclass
class _Work:
    runtime: Runtime
    dry_run: bool = False
    changes: list[DependencyChange] = field(default_factory=list)
    todo: deque[tuple[str, int]] = field(default_factory=deque)
    seen: set[tuple[str, int]] = field(default_factory=set)

    def push(self, kind: str, task_id: int) -> None:
        # a dry run must not loop: nothing it "moves" really moves
        if self.dry_run and (kind, task_id) in self.seen:
            return
        self.seen.add((kind, task_id))
        self.todo.append((kind, task_id))

    def run(self) -> list[DependencyChange]:
        while self.todo:
            kind, task_id = self.todo.popleft()
            try:
                if kind == "parent":
                    self._parent(task_id)
                else:
                    self._child(task_id)
            except Exception as exc:
                # best effort: what the caller did stands (a cancel, a finished run), and
                # reconcile's dependency pass settles these rows later
                log.warning(
                    "dependencies of task %s not settled: %s: %s",
                    task_id,
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
        return self.changes

    # -- a task whose status changed: its children follow ---------------------------------

    def _parent(self, parent_id: int) -> None:
        store = self.runtime.store
        children = store.children_of(parent_id)
        if not children:
            return
        parent = store.get(parent_id)
        parent_status = parent.status if parent is not None else None
        for child_id, child_status in children:
            if child_status == _DEFERRED:
                self.push("child", child_id)
            elif child_status == _CANCELED and parent_status not in (None, _FAILED, _CANCELED):
                self._restore(child_id, parent_id, parent_status or "")

    def _restore(self, child_id: int, parent_id: int, parent_status: str) -> None:
        """A child canceled because of this parent, which is live or finished again."""
        store = self.runtime.store
        child = store.get(child_id)
        if child is None or child.status != _CANCELED or _cascade_parent(child) != parent_id:
            return  # canceled by an operator, or for another parent: it stays canceled
        reason = f"parent #{parent_id} is {parent_status} again (retried)"
        if self.dry_run:
            self.changes.append(DependencyChange(child_id, _CANCELED, _DEFERRED, reason))
        else:
            entry = _entry(
                f"deferred again: parent #{parent_id} is {parent_status}",
                f"parent #{parent_id} was retried after it ended, so this task waits for its parents again",
            )
            if not store.mark_deferred_again(child_id, child.finished_at, entry):
                return
            self.changes.append(DependencyChange(child_id, _CANCELED, _DEFERRED, reason))
        self.push("child", child_id)
        self.push("parent", child_id)  # its own dependents canceled because of it come back too

    # -- a deferred task: released, canceled, or still waiting ---------------------------

    def _child(self, child_id: int) -> None:
        store = self.runtime.store
        states = store.parent_states(child_id)
        if self.dry_run:
            record = store.get(child_id)
            if record is None or record.status != _DEFERRED:
                return
        blocker = next(((p, s) for p, s in states if s is None or s in (_FAILED, _CANCELED)), None)
        if blocker is not None:
            self._cancel(child_id, *blocker)
        elif all(s == _FINISHED for _, s in states):
            self._release(child_id, [p for p, _ in states])

    def _cancel(self, child_id: int, parent_id: int, parent_status: str | None) -> None:
        if parent_status is None:
            what, why = "no longer exists", f"parent #{parent_id} was deleted (pruned) before this task ran"
        elif parent_status == _FAILED:
            what, why = "failed", f"parent #{parent_id} failed for good (no retries left)"
        else:
            what, why = "was canceled", f"parent #{parent_id} was canceled"
        reason = f"parent #{parent_id} {what}"
        if not self.dry_run:
            entry = _entry(
                f"canceled: {reason}",
                f"{why}, so this task will not run. `rqjobs retry {parent_id}` puts it back to deferred.",
            )
            if not self.runtime.store.mark_dependency_canceled(child_id, entry):
                return
        self.changes.append(DependencyChange(child_id, _DEFERRED, _CANCELED, reason))
        self.push("parent", child_id)

    def _release(self, child_id: int, parent_ids: list[int]) -> None:
        from rqjobs.exceptions import EnqueueFailed

        names = ", ".join(f"#{p}" for p in parent_ids) or "none"
        reason = f"parent{'s' if len(parent_ids) != 1 else ''} {names} finished"
        if self.dry_run:
            self.changes.append(DependencyChange(child_id, _DEFERRED, TaskStatus.QUEUED.value, reason))
            return
        store = self.runtime.store
        # the row first (the outbox): a crash before the push leaves a queued row without a
        # job, which reconcile enqueues after its grace period
        if not store.mark_released(child_id, _entry(f"enqueued: {reason}", "its parents finished")):
            return
        record: TaskRecord | None = store.get(child_id)
        if record is None or record.status != TaskStatus.QUEUED.value:
            return
        try:
            submit_job(self.runtime, record)
        except EnqueueFailed as exc:  # submit_job failed the row; its dependents follow it
            self.changes.append(DependencyChange(child_id, _DEFERRED, _FAILED, exc.message))
            self.push("parent", child_id)
            return
        self.changes.append(DependencyChange(child_id, _DEFERRED, TaskStatus.QUEUED.value, reason))


def check_after(after: Iterable[Any] | None, *, scheduled: bool) -> list[int]:
    """The parent ids of ``after=``, checked (ints, at most MAX_PARENTS); nothing is read.

    Raises :class:`~rqjobs.exceptions.InvalidDependency`. ``scheduled``: the request also
    gives a time (``at``/``delay_s``), which a deferred task does not take: it runs when
    its parents have finished.
    """
    from rqjobs.exceptions import InvalidDependency
    from rqjobs.store.dependencies import MAX_PARENTS

    if after is None:
        return []
    if isinstance(after, (int, str)):
        after = [after]
    ids: list[int] = []
    for value in after:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidDependency(f"after: task ids are whole numbers, got {value!r}"[:200])
        try:
            task_id = int(value)
        except ValueError:
            raise InvalidDependency(f"after: task ids are whole numbers, got {value!r}"[:200]) from None
        if not 1 <= task_id <= 2**31 - 1:
            raise InvalidDependency(f"after: no task can have the id {task_id}")
        if task_id not in ids:
            ids.append(task_id)
    if len(ids) > MAX_PARENTS:
        raise InvalidDependency(f"after: at most {MAX_PARENTS} parents, got {len(ids)}")
    if ids and scheduled:
        raise InvalidDependency(
            "a task enqueued --after others runs when they have finished: give no --at/--in with it"
        )
    return ids


def _entry(header: str, detail: str) -> str:
    """A block of the ``log`` column: ``--- HEADER at TIME ---`` then the detail."""
    from rqjobs.store.models import utcnow

    when = utcnow().isoformat(timespec="seconds")
    return f"--- {header} at {when} ---\n{detail.rstrip()}\n"


def _cascade_parent(record: TaskRecord) -> int | None:
    """The parent whose end canceled this row, if the row's last log block says so."""
    if not record.log:
        return None
    last = record.log.rstrip("\n").rsplit("\n--- ", 1)[-1].removeprefix("--- ")
    match = _CASCADE.match(last)
    return int(match.group("parent")) if match else None


def settle_dependents(runtime: Runtime, task_id: int) -> list[DependencyChange]:
    """Make the tasks that depend on ``task_id`` follow its status now (and theirs, on down).

    Call it after any change of ``task_id``'s status; without dependents it costs one
    indexed read. Returns what it moved.
    """
    work = _Work(runtime)
    work.push("parent", task_id)
    return work.run()


def settle_task(runtime: Runtime, task_id: int) -> list[DependencyChange]:
    """A ``deferred`` row: enqueue it if every parent finished, cancel it if one cannot."""
    work = _Work(runtime)
    work.push("child", task_id)
    return work.run()


def reconcile_dependencies(runtime: Runtime, *, dry_run: bool = False) -> list[DependencyChange]:
    """Reconcile's pass: settle every ``deferred`` row and every retried parent.

    Covers whatever a process that died left half done: a parent finished but its worker
    was gone before the release, a parent failed (reconcile failed it, or its canceler
    died) with children still deferred, a retry whose restore never ran. A deferred row
    has no job in Redis by design: nothing here or in the rest of reconcile calls it lost.
    """
    store = runtime.store
    work = _Work(runtime, dry_run=dry_run)
    for child_id, states in store.deferred_parent_states().items():
        if any(s is None or s in (_FAILED, _CANCELED) for _, s in states) or all(
            s == _FINISHED for _, s in states
        ):
            work.push("child", child_id)
    for child_id in store.deferred_without_parents():
        work.push("child", child_id)  # no parent: nothing to wait for
    for parent_id in store.parents_requeued_after_cascade():
        work.push("parent", parent_id)
    return work.run()
