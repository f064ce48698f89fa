"""Bulk enqueue: ``enqueue_many`` (and ``rqjobs enqueue NAME --from-jsonl FILE``).

The single enqueue's outbox rule, for a batch: every item is checked first with the
same request check as :func:`rqjobs.api.enqueue_task` (one bad item refuses the whole
batch, nothing written); then every row is inserted in ONE transaction
(:meth:`TaskStore.insert_many`); then every job goes to Redis in ONE pipeline
(MULTI/EXEC, so all of them land or none). If that pipeline fails, the batch's rows are
marked ``failed`` with the reason, in one UPDATE, unless the jobs turn out to have
landed after all.

Unique keys: items of a ``unique=True`` task are keyed by their arguments as usual.
An item whose key a live row already holds creates nothing: its place in the result is
that row (``existing`` True); two items of one batch with the same key make one row,
and both places hold it (the second with ``existing`` True).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rqjobs.checks import TaskPlan, check_request
from rqjobs.exceptions import EnqueueFailed, InvalidInput, InvalidTaskArguments

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime
    from rqjobs.store.records import TaskRecord

__all__ = ["check_many", "enqueue_many", "enqueue_plans", "push_jobs"]


def _item_label(index: int) -> str:
    return f"item {index + 1}"


def check_many(
    task: str | Callable[..., Any],
    arguments: Iterable[Mapping[str, Any]],
    *,
    description: str,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    runtime: Runtime | None = None,
    label: Callable[[int], str] = _item_label,
) -> list[TaskPlan]:
    """Check every item as a single enqueue would; the first bad one refuses them all.

    Each item is a mapping of the task's arguments by name. The refusal's message starts
    with ``label(index)`` ("item 7: ...", or "line 7: ..." from the CLI). Writes nothing.
    """
    from rqjobs.checks import check_arguments, task_unique_key
    from rqjobs.runtime import ready_runtime
    from rqjobs.tasks.registry import get_task as task_spec

    settings = ready_runtime(runtime).settings  # the task modules imported once, not per item
    spec = task_spec(task)
    plans: list[TaskPlan] = []
    first: TaskPlan | None = None
    for index, item in enumerate(arguments):
        if not isinstance(item, Mapping):
            raise InvalidTaskArguments(
                f"{label(index)}: the arguments must be an object (by parameter name), "
                f"got {type(item).__name__}"
            )
        try:
            if first is None:
                # the whole request check once (options, description, queue...); they are
                # the same for every item, so the others need only their arguments checked
                first = check_request(
                    settings,
                    task,
                    (),
                    {},
                    description=description,
                    queue=queue,
                    timeout_s=timeout_s,
                    retries=retries,
                    retry_interval_s=retry_interval_s,
                    task_kwargs=item,
                )
                plans.append(first)
                continue
            args, kwargs = check_arguments(spec, (), dict(item))
        except InvalidInput as exc:
            raise type(exc)(f"{label(index)}: {exc.message}") from None
        key = task_unique_key(spec, args, kwargs) if spec.unique else None
        # built directly: dataclasses.replace would look every field up again, per item
        plans.append(
            TaskPlan(
                first.name,
                first.description,
                first.queue,
                args,
                kwargs,
                first.timeout_s,
                first.max_retries,
                first.retry_intervals,
                first.scheduled_for,
                key,
            )
        )
    return plans


def enqueue_many(
    task: str | Callable[..., Any],
    arguments: Iterable[Mapping[str, Any]],
    *,
    description: str,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    runtime: Runtime | None = None,
) -> list[TaskRecord]:
    """Record and enqueue one task per item of ``arguments``; returns the rows, in order.

    ``arguments``: one mapping of the task's arguments (by parameter name) per task.
    The options (description, queue, timeout, retries) apply to every task. Raises an
    :class:`~rqjobs.exceptions.InvalidInput` naming the first bad item ("item 7: ...")
    with nothing written, and :class:`~rqjobs.exceptions.EnqueueFailed` when Redis
    refused the batch (its rows are then failed, saying why). A record with
    ``existing`` True is a live row that already held the item's unique key (see the
    module's docstring). Jobs are enqueued now: a batch is not scheduled.
    """
    from rqjobs.runtime import ready_runtime

    runtime = ready_runtime(runtime)
    plans = check_many(
        task,
        arguments,
        description=description,
        queue=queue,
        timeout_s=timeout_s,
        retries=retries,
        retry_interval_s=retry_interval_s,
        runtime=runtime,
    )
    return enqueue_plans(runtime, plans)


def enqueue_plans(runtime: Runtime, plans: list[TaskPlan]) -> list[TaskRecord]:
    """Insert the checked plans' rows in one transaction, then push their jobs in one pipeline."""
    if not plans:
        return []
    records = runtime.store.insert_many([plan.row_options() for plan in plans])
    fresh = [record for record in records if not record.existing]
    push_jobs(runtime, fresh)
    return records


def push_jobs(runtime: Runtime, records: list[TaskRecord]) -> None:
    """Every record's job in ONE Redis pipeline; on failure, every record's row failed."""
    if not records:
        return
    from redis.exceptions import RedisError
    from rq.job import Retry

    from rqjobs.broker.connection import describe, job_landed
    from rqjobs.broker.rq_internals import enqueue_batch
    from rqjobs.exceptions import RqjobsError
    from rqjobs.store.repository import attempt_log_entry
    from rqjobs.tasks.registry import get_task as task_spec

    settings = runtime.settings
    try:
        by_queue: dict[str, list[Any]] = {}
        for record in records:
            spec = task_spec(record.name)
            queue = runtime.queue(record.queue)
            by_queue.setdefault(record.queue, []).append(
                queue.create_job(
                    spec.path,
                    args=record.args,
                    kwargs=record.kwargs,
                    timeout=record.timeout_s,
                    result_ttl=settings.result_ttl_s,
                    failure_ttl=settings.failure_ttl_s,
                    description=record.description,
                    job_id=record.job_id,
                    retry=Retry(max=record.max_retries, interval=record.retry_intervals or 0)
                    if record.max_retries
                    else None,
                )
            )
        with runtime.redis.pipeline() as pipe:
            for name, jobs in by_queue.items():
                enqueue_batch(pipe, runtime.queue(name), jobs)
            pipe.execute()
    except BaseException as exc:
        # MULTI/EXEC: all of the batch landed or none; one job tells which
        if job_landed(settings, records[-1].job_id):
            return
        reason = f"{type(exc).__name__}: {exc}"
        where = describe(settings)
        entry = attempt_log_entry(
            0, "was not enqueued", f"could not put the job in Redis ({where}): {reason}"
        )
        runtime.store.mark_many_enqueue_failed([r.id for r in records], entry)
        if isinstance(exc, (RedisError, OSError, RqjobsError)):
            first, last = records[0].id, records[-1].id
            raise EnqueueFailed(
                f"tasks {first}..{last} ({len(records)}) failed: Redis is unreachable ({where}): {reason}"
            ) from exc
        raise
