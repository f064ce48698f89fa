"""The rqjobs worker: RQ's forking Worker, plus what the task decorator cannot see.

The decorator records every run that returns or raises. It cannot record a work horse
that dies (SIGKILL, the OOM killer, a cold shutdown) or a job naming a function that is
not a registered task; this subclass writes those rows from the worker's side. Every
write is a conditional update from the expected status, so when the decorator already
wrote the row, the worker's write changes nothing.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.timeouts import UnixSignalDeathPenalty
from rq.worker import Worker

from rqjobs.broker.job import RqjobsJob
from rqjobs.status import WAITING, TaskStatus
from rqjobs.store.models import utcnow
from rqjobs.store.repository import attempt_log_entry
from rqjobs.tasks import commons

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")


class TrackingDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM timeout, which also tells the decorator it fired.

    A task that catches ``Exception`` swallows the timeout; the decorator then still
    fails the row and raises once the task returns.
    """

    def handle_death_penalty(self, signum: int, frame: Any) -> None:
        commons.note_timeout_fired()
        super().handle_death_penalty(signum, frame)


def _task_id(job: Job) -> int | None:
    try:
        return int(job.id)
    except (TypeError, ValueError):
        known = job.meta.get("rqjobs_task_id") if job.meta else None
        return int(known) if known is not None else None


def _signal_description(ret_val: int | None) -> str:
    if ret_val is not None and os.WIFSIGNALED(ret_val):
        signum = os.WTERMSIG(ret_val)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = " (kill -9 or the OOM killer)" if signum == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    if ret_val is not None and os.WIFEXITED(ret_val):
        return f"exited with status {os.WEXITSTATUS(ret_val)}"
    return f"ended unexpectedly (wait status {ret_val})"


class RqjobsWorker(Worker):
    """A forking RQ worker that keeps task rows truthful."""

    death_penalty_class = TrackingDeathPenalty
    job_class = RqjobsJob

    def __init__(self, queues: Sequence[str], *, runtime: Runtime, **kwargs: Any) -> None:
        self.runtime = runtime
        settings = runtime.settings
        super().__init__(
            [runtime.queue(name) for name in queues],
            connection=runtime.redis,
            serializer=JSONSerializer,
            job_class=RqjobsJob,
            queue_class=Queue,
            default_result_ttl=settings.result_ttl_s,
            **kwargs,
        )

    @property
    def store(self) -> Any:
        return self.runtime.store

    def _fail_row(self, job: Job, what: str, detail: str, *, from_statuses: Sequence[str]) -> bool:
        """Record a run that ended outside the decorator: failed, or waiting for RQ's retry."""
        task_id = _task_id(job)
        if task_id is None:
            return False
        will_retry = bool(job.should_retry)
        interval = job.get_retry_interval() if will_retry else 0
        retry_at = utcnow() + timedelta(seconds=interval) if interval else None
        record = self.store.get(task_id)
        attempt = record.attempts if record else 0
        entry = attempt_log_entry(attempt, what, detail, where=commons.worker_label())
        return self.store.mark_attempt_failed(
            task_id, entry, will_retry=will_retry, retry_at=retry_at, from_statuses=from_statuses
        )

    # -- in the work horse -------------------------------------------------------------

    def perform_job(self, job: Job, queue: Queue) -> bool:
        if commons.spec_for_path(job.func_name) is None:
            # never import an arbitrary path; fail the row and the job, without retries
            detail = (
                f"job {job.id} names {job.func_name!r}, which is not a registered task on this worker; "
                "the job was refused without running"
            )
            self._fail_row(job, "refused", detail, from_statuses=(*WAITING, TaskStatus.RUNNING.value))
            job.retries_left = None
        return super().perform_job(job, queue)

    # -- in the worker (parent) --------------------------------------------------------

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        # runs before RQ's handle_job_failure, so job.should_retry is still accurate
        what = f"work horse {_signal_description(ret_val)}"
        detail = (
            f"the process running the task ({retpid}) was {_signal_description(ret_val)} "
            f"after {self.current_job_working_time:.0f} s; no traceback exists"
        )
        if job.timeout and job.timeout > 0 and self.current_job_working_time > job.timeout:
            what = f"timed out after {job.timeout} s"
            detail = (
                f"the task did not return within its timeout of {job.timeout} s and was killed; " + detail
            )
        self._fail_row(job, what, detail, from_statuses=(*WAITING, TaskStatus.RUNNING.value))
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        # RQ clears _stopped_job_id inside; in the horse it is never set
        if self._stopped_job_id is not None and self._stopped_job_id == job.id:
            self._record_stopped_job(job)
        super().handle_job_failure(
            job, queue, started_job_registry=started_job_registry, exc_string=exc_string
        )

    def _record_stopped_job(self, job: Job) -> None:
        """A job stopped on request (``rqjobs cancel``, RQ's stop-job command) is canceled.

        RQ kills the horse and files the job as STOPPED without retrying it; the row must
        say ``canceled`` too, never ``failed`` or ``queued``. ``rqjobs cancel`` usually
        wrote that already, and then this conditional update changes nothing.
        """
        task_id = _task_id(job)
        if task_id is None:
            return
        try:
            record = self.store.get(task_id)
            detail = "the task was stopped on request: its work horse was killed"
            entry = attempt_log_entry(
                record.attempts if record else 0, "stopped on request", detail, where=commons.worker_label()
            )
            self.store.mark_canceled(task_id, (TaskStatus.RUNNING.value,), entry)
        except Exception:  # the worker must go on with the next job whatever the database says
            log.exception("could not record that job %s was stopped", job.id)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        job = self.get_current_job() if self.horse_pid else None
        try:
            super().request_force_stop(signum, frame)
        finally:
            if job is not None:
                name = signal.Signals(signum).name
                detail = f"the worker received a second {name} (cold shutdown) and killed the running task"
                job.retries_left = None
                self._fail_row(job, "stopped", detail, from_statuses=(TaskStatus.RUNNING.value,))


def run_worker(
    runtime: Runtime,
    queues: Sequence[str] = (),
    *,
    burst: bool = False,
    with_scheduler: bool = True,
    logging_level: str = "INFO",
) -> bool:
    """Import the task modules, then work the queues until stopped (or drained, in burst)."""
    commons.load_task_modules(runtime.settings)
    queue_names = list(queues) or [runtime.settings.default_queue]
    worker = RqjobsWorker(queue_names, runtime=runtime)
    return worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging_level)
