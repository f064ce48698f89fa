"""RQ's Job, restricted to registered tasks.

Plain RQ imports whatever dotted path a job names: its function, and its success,
failure and stopped callbacks. A worker that reads jobs from a shared Redis must not:
this Job resolves ``func_name`` through the task registry only, never resolves a
callback (rqjobs sets none, so any callback name comes from a job written behind its
back), and refuses a job with dependencies (rqjobs makes none). Such a job fails with
:class:`UnregisteredTask` before anything is imported.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rq.job import Job, JobStatus

from rqjobs.exceptions import UnregisteredTask

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.queue import Queue


def task_id_of(job: Job) -> int | None:
    """The task row of a job: its id, or the row made for a job enqueued without rqjobs."""
    try:
        return int(job.id)
    except (TypeError, ValueError):
        known = job.meta.get("rqjobs_task_id") if job.meta else None
        return int(known) if known is not None else None


class RqjobsJob(Job):
    #: when the next retry runs, as the task row records it; set by the decorator or the
    #: worker just before RQ's failure handling, so the row and Redis name the same time
    rqjobs_retry_at: datetime | None = None

    def refusal(self) -> str | None:
        """Why this worker must not run the job, or None: it names only registered code.

        Read from the job's hash alone, so it is decided before anything is imported.
        """
        from rqjobs.tasks.registry import spec_for_path

        callbacks = {
            "success callback": self._success_callback_name,
            "failure callback": self._failure_callback_name,
            "stopped callback": self._stopped_callback_name,
        }
        named = [f"{kind} {name!r}" for kind, name in callbacks.items() if name]
        if named:
            return (
                f"job {self.id} names {', '.join(named)}: rqjobs runs registered tasks only and sets no "
                "callbacks; the job was refused without running"
            )
        if self._dependency_ids:
            return (
                f"job {self.id} depends on {', '.join(map(repr, self._dependency_ids))}: rqjobs makes no "
                "dependent jobs; the job was refused without running"
            )
        if spec_for_path(self.func_name) is None:
            return (
                f"job {self.id} names {self.func_name!r}, which is not a registered task on this worker "
                "(check tasks_modules in the worker's config); the job was refused without running"
            )
        return None

    @property
    def func(self) -> Any:  # type: ignore[override]
        from rqjobs.tasks.registry import spec_for_path

        reason = self.refusal()
        spec = spec_for_path(self.func_name)
        if reason is not None or spec is None:
            raise UnregisteredTask(reason or f"job {self.id} names {self.func_name!r}")
        return spec.wrapper

    # RQ resolves these with import_attribute; rqjobs never does, whatever the hash says
    @property
    def success_callback(self) -> None:  # type: ignore[override]
        return None

    @property
    def failure_callback(self) -> None:  # type: ignore[override]
        return None

    @property
    def stopped_callback(self) -> None:  # type: ignore[override]
        return None

    def retry(self, queue: Queue, pipeline: Pipeline) -> None:
        """RQ's retry, scheduled at the time the row shows, in whole seconds.

        RQ schedules ``now + interval`` and its registry rounds that down to a whole
        second, so a retry could run up to a second before its interval was over.
        """
        interval = self.get_retry_interval()
        if not interval:
            self.rqjobs_retry_at = None
            super().retry(queue, pipeline)
            return
        from rqjobs.timeparse import ceil_to_second

        when = self.rqjobs_retry_at or ceil_to_second(
            datetime.now(timezone.utc) + timedelta(seconds=interval)
        )
        self.rqjobs_retry_at = None
        assert self.retries_left
        self.retries_left -= 1
        # all in the caller's transaction. RQ's retry writes the status at once, and its
        # ScheduledJobRegistry.schedule ignores the pipeline it is given: a horse killed in
        # between left a job called scheduled (or in the registry) with its retry not used
        # up, and it ran once more than its retries allow (test_chaos, seed 284206045)
        pipeline.sadd(queue.redis_queues_keys, queue.key)
        self.set_status(JobStatus.SCHEDULED, pipeline=pipeline)
        self.save(pipeline=pipeline)
        self.cleanup(ttl=self.ttl, pipeline=pipeline)
        pipeline.zadd(queue.scheduled_job_registry.key, {self.id: int(when.timestamp())})
        self.log.info("Job %s: scheduled for retry at %s, %s remaining", self.id, when, self.retries_left)
