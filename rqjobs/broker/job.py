"""RQ's Job, restricted to registered tasks.

Plain RQ imports whatever dotted path a job names. A worker that reads jobs from a
shared Redis must not: this Job resolves ``func_name`` through the task registry only,
so a job naming anything else fails with :class:`UnregisteredTask` before any code runs.
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

    @property
    def func(self) -> Any:  # type: ignore[override]
        from rqjobs.tasks.registry import spec_for_path

        spec = spec_for_path(self.func_name)
        if spec is None:
            raise UnregisteredTask(
                f"job {self.id} names {self.func_name!r}, which is not a registered task on this worker "
                "(check tasks_modules in the worker's config)"
            )
        return spec.wrapper

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
        self.set_status(JobStatus.SCHEDULED)
        queue.schedule_job(self, when, pipeline=pipeline)
        self.log.info("Job %s: scheduled for retry at %s, %s remaining", self.id, when, self.retries_left)
