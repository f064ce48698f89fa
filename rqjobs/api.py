"""The Python API: enqueue tasks and read their rows.

``enqueue_task`` is the okpy seed made safe: validate everything first (a refusal
writes nothing), commit the row, *then* put the job in Redis under ``str(row.id)``.
If Redis fails, the row is marked failed with the reason before the error reaches the
caller, so no row is ever left ``queued`` for a job that does not exist. The checks
themselves live in :mod:`rqjobs.checks` (``--dry-run`` runs them alone).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rqjobs.checks import TaskPlan, check_task, resolve_schedule
from rqjobs.dependencies import check_after, settle_dependents, settle_task
from rqjobs.exceptions import InvalidInput
from rqjobs.submit import submit_job
from rqjobs.tasks.registry import get_task as task_spec

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime
    from rqjobs.store.repository import TaskRecord


__all__ = ["TaskPlan", "check_task", "enqueue_task", "resolve_schedule", "submit_job"]


def enqueue_task(
    task: str | Callable[..., Any],
    *args: Any,
    description: str,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    at: datetime | None = None,
    delay_s: float | None = None,
    runtime: Runtime | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    after: Sequence[int] | None = None,
    unique_key: str | None = None,
    **kwargs: Any,
) -> TaskRecord:
    """Record a task and enqueue its job; returns a snapshot of the new row.

    ``after``: ids of tasks this one waits for. The row is then ``deferred``, with no job
    in Redis, until every one of them has finished (at once if they already have); it is
    canceled if one fails for good or is canceled. A parent that does not exist, or that
    already failed or was canceled, is refused (nothing written).

    The task's arguments follow ``task``: positionally or by keyword. A parameter whose
    name is one of this function's own (``queue``, ``description``...) goes in
    ``task_kwargs={"queue": ...}``. Raises :class:`ValueError` (an
    :class:`~rqjobs.exceptions.InvalidInput`) for a bad request, with nothing written,
    and :class:`~rqjobs.exceptions.EnqueueFailed` when Redis failed, after marking the
    row failed.

    ``unique_key`` (or a ``@background_task(unique=True)`` task, keyed by its arguments):
    while a row with that key is queued, scheduled, deferred or running, nothing is
    created and that row is returned, with ``existing`` True. The database's unique
    index decides, so two processes racing with one key make one row.
    """
    from rqjobs.runtime import ready_runtime

    runtime = ready_runtime(runtime)
    plan = check_task(
        task,
        *args,
        description=description,
        queue=queue,
        timeout_s=timeout_s,
        retries=retries,
        retry_interval_s=retry_interval_s,
        at=at,
        delay_s=delay_s,
        runtime=runtime,
        task_kwargs=task_kwargs,
        unique_key=unique_key,
        **kwargs,
    )
    parents = check_after(after, scheduled=plan.scheduled_for is not None)
    if parents:
        if plan.unique_key is not None:
            holder = runtime.store.live_holder(plan.unique_key)
            if holder is not None:
                return replace(holder, existing=True)  # the live row holding the key
        return _enqueue_after(runtime, plan, parents)
    if plan.unique_key is not None:
        record, created = runtime.store.insert_unique(**plan.row_options())
        if not created:
            return record  # the live row holding the key; nothing was written
    else:
        record = runtime.store.insert(**plan.row_options())
    submit_job(runtime, record)
    return record


def _enqueue_after(runtime: Runtime, plan: TaskPlan, parents: list[int]) -> TaskRecord:
    """A deferred row and its edges, committed together; then released at once if it may run.

    The settle after the commit closes the race with a parent ending meanwhile: that
    parent's worker may have looked for dependents before this row existed.
    """
    record = runtime.store.insert_after(parents, **plan.row_options())
    if record.existing:  # a live row holds the unique key: nothing was written
        return record
    if settle_task(runtime, record.id):
        return runtime.store.get(record.id) or record
    return record


#: the "did it land after all?" probe after a failed enqueue waits at most this long


# -- operator actions: retry, cancel, prune ---------------------------------------------


@dataclass(frozen=True)
class TaskOutcome:
    """What ``retry_tasks`` or ``cancel_tasks`` did to one task, for the caller to report.

    ``ok`` says whether the task is now in the state the operator asked for; ``action``
    is one word (``retried``, ``canceled``, ``stopped``, ``skipped``, ``failed``) and
    ``detail`` the reason, in words an operator can act on.
    """

    task_id: int
    ok: bool
    action: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.task_id, "ok": self.ok, "action": self.action, "detail": self.detail}


def operator_label() -> str:
    """user@host of whoever runs the command: the log says who retried or canceled."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no user name in a container without passwd entries
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def operator_log_entry(what: str, detail: str) -> str:
    """A block of the ``log`` column for an operator's action (not an attempt of its own)."""
    from rqjobs.store.models import utcnow

    when = utcnow().isoformat(timespec="seconds")
    return f"--- {what} by {operator_label()} at {when} ---\n{detail.rstrip()}\n"


def _delete_job(runtime: Runtime, job_id: str) -> bool:
    """Remove the job's copy from Redis (queue, registries, hash). False if there was none."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq.serializers import JSONSerializer

    try:
        job = Job.fetch(job_id, connection=runtime.redis, serializer=JSONSerializer)
    except NoSuchJobError:
        return False
    job.delete()
    return True


def _redis_error_types() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    from rqjobs.exceptions import BrokerUnavailable

    return (RedisError, OSError, BrokerUnavailable)


def retry_tasks(
    task_ids: Sequence[int] = (),
    *,
    failed: bool = False,
    names: Sequence[str] = (),
    runtime: Runtime | None = None,
) -> list[TaskOutcome]:
    """Start a new attempt of failed (or canceled) tasks: the same row, queued again.

    ``task_ids`` names the tasks; ``failed=True`` takes every failed task (of ``names``,
    when given). For each: RQ's old copy of the job is removed first (so nothing of the
    earlier run can interfere), the row goes back to ``queued`` with a log line saying
    who retried it (earlier attempts stay in the log, ``attempts`` keeps counting), and
    a fresh job is enqueued with the row's full retry budget. If that enqueue fails, the
    row ends ``failed`` again, saying why; it is never left queued for a missing job.
    """
    from rqjobs.runtime import ready_runtime
    from rqjobs.status import RETRYABLE, TaskStatus

    if not task_ids and not failed:
        raise InvalidInput("name the tasks to retry, or ask for every failed task")
    runtime = ready_runtime(runtime)
    store = runtime.store
    ids = list(dict.fromkeys(int(i) for i in task_ids))
    if failed:
        ids += [i for i in store.ids_with_status((TaskStatus.FAILED.value,), names=names) if i not in ids]
    outcomes = []
    for task_id in ids:
        outcome = _retry_one(runtime, task_id, RETRYABLE)
        if outcome.ok:
            # its dependents canceled because it failed wait for it again
            settle_dependents(runtime, task_id)
        outcomes.append(outcome)
    return outcomes


def _retry_one(runtime: Runtime, task_id: int, retryable: Sequence[str]) -> TaskOutcome:
    from rqjobs.exceptions import RqjobsError

    store = runtime.store
    record = store.get(task_id)
    if record is None:
        return TaskOutcome(task_id, False, "skipped", f"no task {task_id}")
    if record.status not in retryable:
        return TaskOutcome(
            task_id, False, "skipped", f"it is {record.status}; only failed or canceled tasks are retried"
        )
    try:
        task_spec(record.name)
    except RqjobsError as exc:
        return TaskOutcome(task_id, False, "skipped", exc.message)
    refusal = _unique_key_refusal(runtime, record)
    if refusal is not None:
        return refusal
    try:
        _delete_job(runtime, record.job_id)
    except _redis_error_types() as exc:
        return TaskOutcome(
            task_id, False, "failed", f"could not remove its old job from Redis ({type(exc).__name__}: {exc})"
        )
    budget = f"{record.max_retries} retries allowed" if record.max_retries else "no retries"
    entry = operator_log_entry(
        "retried", f"was {record.status} after {record.attempts} attempt(s); a new attempt follows ({budget})"
    )
    from rqjobs.store.unique import UniqueKeyTaken

    try:
        requeued = store.mark_requeued(task_id, entry, from_statuses=retryable)
    except UniqueKeyTaken as exc:  # another live row took the key since the check above
        return _key_taken_outcome(task_id, exc.key, exc.holder)
    if not requeued:
        now = store.get(task_id)
        state = now.status if now else "gone"
        return TaskOutcome(task_id, False, "skipped", f"it changed while being retried (now {state})")
    fresh = store.get(task_id)
    if fresh is None:  # pruned in between
        return TaskOutcome(task_id, False, "skipped", "it was deleted while being retried")
    try:
        submit_job(runtime, fresh)
    except RqjobsError as exc:
        return TaskOutcome(task_id, False, "failed", exc.message)
    return TaskOutcome(
        task_id, True, "retried", f"attempt {fresh.attempts + 1} queued on {fresh.queue} ({budget})"
    )


def _unique_key_refusal(runtime: Runtime, record: TaskRecord) -> TaskOutcome | None:
    """A retry would make a second live row with the row's unique key: refuse it."""
    if not record.unique_key:
        return None
    holder = runtime.store.live_holder(record.unique_key)
    if holder is None or holder.id == record.id:
        return None
    return _key_taken_outcome(record.id, record.unique_key, holder)


def _key_taken_outcome(task_id: int, key: str, holder: TaskRecord | None) -> TaskOutcome:
    who = f"task {holder.id} ({holder.status})" if holder else "another live task"
    return TaskOutcome(
        task_id,
        False,
        "skipped",
        f"{who} holds its unique key {key!r}; retry it once that task has ended",
    )


def cancel_tasks(task_ids: Sequence[int], *, runtime: Runtime | None = None) -> list[TaskOutcome]:
    """Cancel tasks: a waiting one leaves its queue, a running one is stopped.

    A queued or scheduled row is marked ``canceled`` first (one conditional update, so a
    worker that takes the job at that moment finds the row canceled and does not run
    it), then its job is removed from Redis. A row that turned ``running`` in between is
    handled as running: RQ's stop-job command kills its work horse, and the row is
    marked canceled (the worker records the same; whichever writes first wins, and the
    worker never turns a stopped job into ``failed``). A ``deferred`` row (no job yet) is
    canceled at once. Finished and failed tasks are left alone: their outcome says so
    and is not ``ok``. The tasks waiting for a canceled one (``after=``) are canceled
    with it, each saying why (:mod:`rqjobs.dependencies`).
    """
    from rqjobs.runtime import ready_runtime

    runtime = ready_runtime(runtime)
    outcomes = []
    for task_id in dict.fromkeys(task_ids):
        outcome = _cancel_one(runtime, int(task_id))
        if outcome.ok:
            settle_dependents(runtime, outcome.task_id)  # its dependents are canceled with it
        outcomes.append(outcome)
    return outcomes


def _cancel_one(runtime: Runtime, task_id: int) -> TaskOutcome:
    from rqjobs.status import WAITING, TaskStatus

    store = runtime.store
    stop_note: str | None = None
    cancelable = (*WAITING, TaskStatus.DEFERRED.value)
    for _ in range(5):  # the row may move on while we look at it; look again a few times
        record = store.get(task_id)
        if record is None:
            return TaskOutcome(task_id, False, "skipped", f"no task {task_id}")
        if record.status in cancelable:
            where = {
                TaskStatus.SCHEDULED.value: "the scheduled jobs",
                TaskStatus.DEFERRED.value: "the tasks waiting for their parents",
            }.get(record.status, f"queue {record.queue}")
            entry = operator_log_entry("canceled", f"was {record.status}; removed from {where} before it ran")
            if not store.mark_canceled(task_id, cancelable, entry):
                continue
            try:
                _delete_job(runtime, record.job_id)
            except _redis_error_types() as exc:
                return TaskOutcome(
                    task_id,
                    True,
                    "canceled",
                    f"canceled; its job could not be removed from Redis ({type(exc).__name__}: {exc}), "
                    "but a worker will not run it",
                )
            return TaskOutcome(task_id, True, "canceled", f"removed from {where}")
        if record.status == TaskStatus.RUNNING.value:
            if stop_note is None:
                stop_note = _send_stop(runtime, record.job_id)
            entry = operator_log_entry(
                "stopped", f"attempt {record.attempts} was running on {record.worker or '?'}; {stop_note}"
            )
            if store.mark_canceled(task_id, (TaskStatus.RUNNING.value,), entry):
                return TaskOutcome(task_id, True, "stopped", stop_note)
            continue
        if record.status == TaskStatus.CANCELED.value:
            if stop_note is not None:  # the worker recorded our stop before we did
                return TaskOutcome(task_id, True, "stopped", stop_note)
            return TaskOutcome(task_id, True, "canceled", "it was already canceled")
        return TaskOutcome(
            task_id, False, "skipped", f"it already {record.status}; there is nothing to cancel"
        )
    return TaskOutcome(task_id, False, "skipped", "it kept changing while being canceled; try again")


def _send_stop(runtime: Runtime, job_id: str) -> str:
    """Ask the worker running the job to kill its work horse; says what happened."""
    from rq.command import send_stop_job_command
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job
    from rq.serializers import JSONSerializer
    from rq.worker import Worker

    try:
        worker_name = Job.fetch(job_id, connection=runtime.redis, serializer=JSONSerializer).worker_name
        # the stop command goes over pub/sub: to a worker that is gone, it would go nowhere
        if worker_name and not runtime.redis.exists(Worker.redis_worker_namespace_prefix + worker_name):
            return f"its worker ({worker_name}) is gone, so nothing was running it"
        send_stop_job_command(runtime.redis, job_id, serializer=JSONSerializer)
    except NoSuchJobError:
        return "its job is no longer in Redis, so nothing was running it"
    except InvalidJobOperation:
        return "no worker is executing its job, so nothing was stopped"
    except _redis_error_types() as exc:
        return f"the stop command could not be sent ({type(exc).__name__}: {exc}); the run's result will be ignored"
    return f"its worker ({worker_name}) was told to stop it"


def prune_tasks(
    older_than_s: float,
    *,
    statuses: Sequence[str] = (),
    dry_run: bool = False,
    runtime: Runtime | None = None,
) -> tuple[int, datetime]:
    """Delete final rows created more than ``older_than_s`` ago, in batches.

    Returns how many rows were (or, with ``dry_run``, would be) deleted and the cutoff.
    Only final statuses can be pruned: a waiting or running row still has a job.
    """
    from rqjobs.runtime import get_runtime
    from rqjobs.status import FINAL

    wrong = [s for s in statuses if s not in FINAL]
    if wrong:
        raise InvalidInput(f"only final tasks can be pruned ({', '.join(FINAL)}), not {', '.join(wrong)}")
    if older_than_s < 0:
        raise InvalidInput("the age must not be negative")
    runtime = runtime or get_runtime()
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_s)
    count = runtime.store.delete_older_than(cutoff, statuses=list(statuses) or FINAL, dry_run=dry_run)
    return count, cutoff
