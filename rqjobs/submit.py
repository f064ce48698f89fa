"""Putting a committed row's job in Redis: the second half of the outbox rule.

``enqueue_task``, ``rqjobs retry``, reconcile's outbox and the release of a ``deferred``
row (:mod:`rqjobs.dependencies`) all commit the row first and then call
:func:`submit_job`; if Redis fails, the row is marked failed with the reason, so no row
is ever left ``queued`` for a job that does not exist. Kept apart from :mod:`rqjobs.api`
so that :mod:`rqjobs.dependencies`, which ``api`` calls, can enqueue a released child
without an import cycle. ``rqjobs.api.submit_job`` is the same function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rqjobs.exceptions import EnqueueFailed
from rqjobs.tasks.registry import get_task as task_spec

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime
    from rqjobs.store.repository import TaskRecord

__all__ = ["submit_job"]


def submit_job(runtime: Runtime, record: TaskRecord) -> None:
    """Put the row's job in Redis (``job_id = str(row.id)``); on failure, fail the row."""
    from redis.exceptions import RedisError
    from rq.job import Retry

    from rqjobs.broker.connection import describe, job_landed
    from rqjobs.exceptions import RqjobsError
    from rqjobs.store.repository import attempt_log_entry

    spec = task_spec(record.name)
    try:
        queue = runtime.queue(record.queue)
        job = queue.create_job(
            spec.path,
            args=record.args,
            kwargs=record.kwargs,
            timeout=record.timeout_s,
            result_ttl=runtime.settings.result_ttl_s,
            failure_ttl=runtime.settings.failure_ttl_s,
            description=record.description,
            job_id=record.job_id,
            retry=Retry(max=record.max_retries, interval=record.retry_intervals or 0)
            if record.max_retries
            else None,
        )
        if record.scheduled_for is not None:
            # RQ's ScheduledJobRegistry.schedule ignores a pipeline: let RQ order the writes
            queue.schedule_job(job, record.scheduled_for)
        else:
            # one MULTI/EXEC round trip: RQ alone sends the queue registration separately
            with runtime.redis.pipeline() as pipe:
                queue.enqueue_job(job, pipeline=pipe)
                pipe.execute()
    except BaseException as exc:
        # whatever went wrong, the committed row must not stay queued for a job that does not exist
        reason = f"{type(exc).__name__}: {exc}"
        where = describe(runtime.settings)
        if job_landed(runtime.settings, record.job_id):
            # a timed-out write may still have reached Redis: then the job exists and runs
            return
        entry = attempt_log_entry(
            record.attempts, "was not enqueued", f"could not put the job in Redis ({where}): {reason}"
        )
        runtime.store.mark_enqueue_failed(record.id, entry)
        if isinstance(exc, (RedisError, OSError, RqjobsError)):
            raise EnqueueFailed(f"task {record.id} failed: Redis is unreachable ({where}): {reason}") from exc
        raise
