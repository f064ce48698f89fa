"""The rqjobs worker: RQ's forking Worker, plus what the task decorator cannot see.

The decorator records every run that returns or raises. It cannot record a work horse
that dies (SIGKILL, the OOM killer, a cold shutdown) or a job naming a function that is
not a registered task; this subclass writes those rows from the worker's side. Every
write is a conditional update from the expected status, so when the decorator already
wrote the row, the worker's write changes nothing.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.utils import now
from rq.worker import Worker

from rqjobs.broker.job import RqjobsJob, task_id_of
from rqjobs.dependencies import settle_dependents
from rqjobs.flow import check_limits
from rqjobs.hostpid import host_pid
from rqjobs.schedules.ticker import ScheduleTickerMixin, check_schedules
from rqjobs.status import WAITING, TaskStatus
from rqjobs.store.models import utcnow
from rqjobs.store.repository import attempt_log_entry
from rqjobs.tasks import commons
from rqjobs.worker.flow import QueueFlowMixin
from rqjobs.worker.health import WorkerHealthMixin
from rqjobs.worker.horse_exit import describe_end, settle_quiet_exit
from rqjobs.worker.process import signal_description
from rqjobs.worker.reload import ConfigWatcher
from rqjobs.worker.store_pause import StorePauseMixin
from rqjobs.worker.supervisor import run_supervised

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")


class TrackingDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM timeout, which also tells the decorator it fired.

    A task that catches ``Exception`` swallows the timeout; the decorator then still
    fails the row and raises once the task returns.
    """

    def handle_death_penalty(self, signum: int, frame: Any) -> None:
        # the worker uses this class for its own horse-monitoring alarms too: only a job's
        # timeout counts
        if isinstance(self._exception, type) and issubclass(self._exception, JobTimeoutException):
            commons.note_timeout_fired()
        super().handle_death_penalty(signum, frame)


class RqjobsWorker(ScheduleTickerMixin, StorePauseMixin, WorkerHealthMixin, QueueFlowMixin, Worker):
    """A forking RQ worker that keeps task rows truthful.

    :class:`~rqjobs.worker.health.WorkerHealthMixin` adds the liveness key, periodic
    reconcile, horses that die with the worker, and tolerance of Redis outages;
    :class:`~rqjobs.worker.store_pause.StorePauseMixin` takes no jobs while the task
    database fails (and gives back the concurrency slot of the job it puts back);
    :class:`~rqjobs.worker.flow.QueueFlowMixin` skips paused queues and holds jobs whose
    task's concurrency limit is full;
    :class:`~rqjobs.schedules.ticker.ScheduleTickerMixin` fires the ``[[schedule]]`` ticks.
    """

    death_penalty_class = TrackingDeathPenalty
    job_class = RqjobsJob

    def __init__(self, queues: Sequence[str], *, runtime: Runtime, **kwargs: Any) -> None:
        self.runtime = runtime
        settings = runtime.settings
        #: monotonic time at which the running job's horse is killed (None: no job, or no timeout)
        self._kill_deadline: float | None = None
        #: id of the job whose horse this worker killed for outliving its timeout
        self._killed_for_timeout: str | None = None
        #: (scheduled registry key, job id) of jobs this worker ran that may wait for a retry;
        #: kept only when ``remember_runs`` is on (a burst), so a long-lived worker holds none
        self._ran: set[tuple[str, str]] = set()
        self.remember_runs = False
        #: looks at the config file before each job and applies what changed (worker/reload.py)
        self.config_watcher = ConfigWatcher(runtime)
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

    def _label(self) -> str:
        """host:pid of this worker for the log. RQ sets RQ_JOB_ID in the worker too when it
        forks, so in the parent commons.worker_label() would name the worker's parent."""
        return commons.worker_label() if self.is_horse else host_pid()

    def _fail_row(self, job: Job, what: str, detail: str, *, from_statuses: Sequence[str]) -> bool:
        """Record a run that ended outside the decorator: failed, or waiting for RQ's retry."""
        task_id = task_id_of(job)
        if task_id is None:
            return False
        will_retry, retry_at = commons.plan_retry(job)
        record = self.store.get(task_id)
        attempt = record.attempts if record else 0
        entry = attempt_log_entry(attempt, what, detail, where=self._label())
        # once per failure: plan_retry() fixes the retry time RQ will use, and a second
        # call (the safety net in handle_job_failure) could move it past the row's
        job.rqjobs_row_recorded = True  # type: ignore[attr-defined]
        return self.store.mark_attempt_failed(
            task_id, entry, will_retry=will_retry, retry_at=retry_at, from_statuses=from_statuses
        )

    # -- in the work horse -------------------------------------------------------------

    def perform_job(self, job: Job, queue: Queue) -> bool:
        reason = job.refusal() if isinstance(job, RqjobsJob) else None
        if reason is not None:
            # never import an arbitrary path (function, callback): fail the row and the job,
            # without retries; RqjobsJob.func then raises, so RQ files the job as failed
            job.retries_left = None  # first: the row must not wait for a retry that never comes
            log.warning("%s", reason)
            try:
                if task_id_of(job) is None:
                    self._row_for_refused(job, reason)
                else:
                    self._fail_row(job, "refused", reason, from_statuses=(*WAITING, TaskStatus.RUNNING.value))
            except Exception:  # RQ must still file the job as failed
                log.exception("could not record that job %s was refused", job.id)
        return super().perform_job(job, queue)

    def _row_for_refused(self, job: Job, reason: str) -> None:
        """A refused job enqueued without rqjobs gets a row too, failed with the reason."""
        from rqjobs.keys import foreign_job_key

        record = self.store.insert(
            name=(job.func_name or "?")[:200],
            description=f"job {job.id} enqueued outside rqjobs, refused"[:1000],
            queue=(job.origin or "default")[:200],
            args=[],
            kwargs={},
            timeout_s=0,
            status=TaskStatus.RUNNING.value,
            worker=self._label(),
            attempts=1,
            started_at=utcnow(),
        )
        job.meta["rqjobs_task_id"] = record.id
        job.save_meta()
        self.connection.set(foreign_job_key(record.id), job.id)
        self._fail_row(job, "refused", reason, from_statuses=(TaskStatus.RUNNING.value,))

    # -- in the worker (parent) --------------------------------------------------------

    @property  # type: ignore[override]
    def job_monitoring_interval(self) -> int:
        """How long the horse monitor waits between looks: RQ's interval, shortened so
        that it wakes when a running job's kill deadline comes."""
        base = self._monitoring_interval_s
        deadline = getattr(self, "_kill_deadline", None)
        if deadline is None:
            return base
        # signal.alarm takes whole seconds, and 0 would cancel it
        return max(1, min(base, math.ceil(deadline - time.monotonic())))

    @job_monitoring_interval.setter
    def job_monitoring_interval(self, value: int) -> None:
        self._monitoring_interval_s = int(value)

    def execute_job(self, job: Job, queue: Queue) -> None:
        # between jobs, before the fork: the work horse runs on the settings as edited
        self.config_watcher.check()
        if self.remember_runs:
            self._ran.add((queue.scheduled_job_registry.key, job.id))
        super().execute_job(job, queue)
        self._settle_dependents(job)

    def _settle_dependents(self, job: Job) -> None:
        """After the horse is done: the tasks waiting for this one follow its row.

        Here rather than in the decorator because every outcome passes through here (the
        task returned or raised, its horse was killed, it was stopped, it was refused),
        whoever wrote the row, and before this worker takes its next job, so a chain
        drains in one burst. A worker that dies first leaves it to reconcile.
        """
        task_id = task_id_of(job)
        if task_id is None:
            return
        try:
            for change in settle_dependents(self.runtime, task_id):
                log.info(
                    "task %s %s -> %s: %s",
                    change.task_id,
                    change.from_status,
                    change.to_status,
                    change.reason,
                )
        except Exception:  # the worker goes on; reconcile's dependency pass settles them
            log.exception("could not settle the tasks waiting for task %s", task_id)

    def monitor_work_horse(self, job: Job, queue: Queue) -> None:
        """RQ's monitor, killing a horse ``timeout_grace_s`` after its timeout (RQ: 60 s).

        A task that ignores or blocks SIGALRM, or swallows the timeout and keeps going,
        never returns; the horse is killed and the row records the timeout.
        """
        timeout = job.timeout if job.timeout is not None else self.queue_class.DEFAULT_TIMEOUT
        if timeout > 0:  # -1: no timeout
            self._kill_deadline = time.monotonic() + timeout + self.runtime.settings.timeout_grace_s
        horse_pid = self.horse_pid
        try:
            super().monitor_work_horse(job, queue)
            if self.last_horse_status == os.EX_OK:  # RQ looks no further than that: we do
                settle_quiet_exit(self, job, queue, horse_pid, os.EX_OK)
        finally:
            self._kill_deadline = None
            self._killed_for_timeout = None

    def maintain_heartbeats(self, job: Job) -> None:
        # called by RQ's monitor each time its wait for the horse times out
        deadline = self._kill_deadline
        if deadline is not None and time.monotonic() >= deadline and self.horse_pid:
            self.log.warning(
                "Worker %s: job %s still running %g s after its timeout of %s s; killing its work horse %s",
                self.name,
                job.id,
                self.runtime.settings.timeout_grace_s,
                job.timeout,
                self.horse_pid,
            )
            self._killed_for_timeout = job.id
            self._kill_deadline = None
            self.kill_horse()  # SIGKILL to the horse's process group; RQ's monitor reaps it next
        super().maintain_heartbeats(job)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        # runs before RQ's handle_job_failure, so job.should_retry is still accurate;
        # RQ has reset current_job_working_time by now: measure from the monitor's start
        elapsed_s = (utcnow() - job.started_at).total_seconds() if job.started_at else 0.0
        how = signal_description(ret_val)
        what = describe_end(how, ret_val)
        detail = (
            f"the process running the task ({retpid}) was {how} after {elapsed_s:.1f} s; no traceback exists"
        )
        timeout = job.timeout or 0
        killed_by_us = self._killed_for_timeout == job.id
        # RQ's own kill (timeout + 60 s) reaps the horse itself and passes no wait status
        if killed_by_us or (ret_val is None and timeout > 0 and elapsed_s > timeout):
            what = f"timed out after {timeout} s"
            detail = (
                f"the task did not return within its timeout of {timeout} s, nor in the "
                f"{self.runtime.settings.timeout_grace_s:g} s grace after it, so the worker killed it "
                f"(pid {retpid}, {signal_description(ret_val, hint=False)}) after {elapsed_s:.1f} s; "
                "no traceback exists"
            )
        elif timeout > 0 and elapsed_s > timeout:
            detail += f" (its timeout of {timeout} s had passed)"
        self._fail_row(job, what, detail, from_statuses=(*WAITING, TaskStatus.RUNNING.value))
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        # RQ clears _stopped_job_id inside; in the horse it is never set
        if self._stopped_job_id is not None and self._stopped_job_id == job.id:
            self._record_stopped_job(job)
        elif not getattr(job, "rqjobs_row_recorded", False):
            # the safety net: a failure the decorator did not record (it never ran, or the
            # failure struck while it wrote the row); a no-op when the row already moved on
            self._settle_unrecorded_failure(job, exc_string)
        super().handle_job_failure(
            job, queue, started_job_registry=started_job_registry, exc_string=exc_string
        )

    def _record_stopped_job(self, job: Job) -> None:
        """A job stopped on request (``rqjobs cancel``, RQ's stop-job command) is canceled.

        RQ kills the horse and files the job as STOPPED without retrying it; the row must
        say ``canceled`` too, never ``failed`` or ``queued``. ``rqjobs cancel`` usually
        wrote that already, and then this conditional update changes nothing.
        """
        task_id = task_id_of(job)
        if task_id is None:
            return
        try:
            record = self.store.get(task_id)
            detail = "the task was stopped on request: its work horse was killed"
            entry = attempt_log_entry(
                record.attempts if record else 0, "stopped on request", detail, where=self._label()
            )
            self.store.mark_canceled(task_id, (TaskStatus.RUNNING.value,), entry)
        except Exception:  # the worker must go on with the next job whatever the database says
            log.exception("could not record that job %s was stopped", job.id)

    def _settle_unrecorded_failure(self, job: Job, exc_string: str) -> None:
        try:
            detail = exc_string.strip() or "the job failed in RQ before the task could record why"
            self._fail_row(job, "failed", detail, from_statuses=(TaskStatus.RUNNING.value,))
        except Exception:  # RQ's own failure handling must still run
            log.exception("could not record the failure of job %s", job.id)

    def request_force_stop(self, signum: int, frame: Any) -> None:
        self.stop_signaled = True
        job = self.get_current_job() if self.horse_pid else None
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            # RQ killed the horse (a repeat signal within 1 s is ignored and returns instead)
            if job is not None:
                self._settle_cold_shutdown(job, signum)
            raise

    def _settle_cold_shutdown(self, job: Job, signum: int) -> None:
        """Let RQ file the killed job now (retry or failed registry) and the row agree.

        Left alone, the job would sit in RQ's started registry until its heartbeat expired
        and RQ's cleanup retried it, behind the row's back.
        """
        name = signal.Signals(signum).name
        detail = f"the worker received a second {name} (cold shutdown) and killed the running task"
        try:
            job.ended_at = job.ended_at or now()
            self.handle_job_failure(job, self.runtime.queue(job.origin), exc_string=detail)
        except Exception:
            log.exception("could not file job %s after the cold shutdown", job.id)

    # -- burst mode ----------------------------------------------------------------------

    def next_retry_due(self) -> float | None:
        """When the earliest scheduled retry of a job this worker ran is due (epoch seconds).

        A job found not scheduled is forgotten: it finished, failed for good, or waits in
        its queue, which this burst drains anyway.
        """
        ran = sorted(self._ran)
        if not ran:
            return None
        with self.connection.pipeline() as pipe:
            for registry_key, job_id in ran:
                pipe.zscore(registry_key, job_id)
            scores = pipe.execute()
        due: float | None = None
        for entry, score in zip(ran, scores, strict=True):
            if score is None:
                self._ran.discard(entry)
            else:
                due = score if due is None else min(due, score)
        return due


def run_worker(
    runtime: Runtime,
    queues: Sequence[str] = (),
    *,
    burst: bool = False,
    with_scheduler: bool = True,
    logging_level: str = "INFO",
) -> bool:
    """Import the task modules, then work the queues until stopped (or drained, in burst).

    RQ's burst worker moves scheduled jobs into their queues once, when it starts, so
    the retries of the jobs it ran would wait for another worker. With the scheduler on,
    a burst here waits for those retries (their intervals) and works again, until none
    is left; jobs scheduled for later by anyone else stay scheduled.

    RQ's loop is started again after a Redis outage (see
    :func:`rqjobs.worker.supervisor.run_supervised`), with the retries still awaited.
    """
    from rqjobs.redact import install_log_redaction

    install_log_redaction()  # no password of a configured URL reaches the worker's log
    commons.load_task_modules(runtime.settings)
    check_schedules(runtime.settings)  # an unknown task or bad arguments: refused before any work
    check_limits(runtime.settings)  # a [limits] entry naming no task would limit nothing
    # open the task database now: a wrong URL or a schema that needs `rqjobs db upgrade`
    # stops the worker with a clear error instead of failing every job it takes
    runtime.store  # noqa: B018
    queue_names = list(queues) or [runtime.settings.default_queue]
    previous: list[RqjobsWorker] = []

    def make_worker() -> RqjobsWorker:
        worker = RqjobsWorker(queue_names, runtime=runtime)
        worker.remember_runs = burst and with_scheduler
        if previous:  # started again after a Redis outage: the retries it awaited still count
            worker._ran = set(previous[0]._ran)
        previous[:] = [worker]
        return worker

    def run_loop(worker: RqjobsWorker) -> bool:
        worked = worker.work(burst=burst, with_scheduler=with_scheduler, logging_level=logging_level)
        if not worker.remember_runs:
            return worked
        overdue_before = False
        while not worker.stop_signaled and worker.drained and not worker.broker_lost:
            due = worker.next_retry_due()
            if due is None:
                break
            wait_s = due - time.time()
            overdue = wait_s <= 0
            if overdue and overdue_before:
                # still due after a pass: another worker's scheduler holds the queue's lock and
                # moves the job within its 1 s interval (or its lock expires)
                wait_s = 1.0
            overdue_before = overdue
            try:
                if wait_s > 0:
                    worker.log.info(
                        "Worker %s: waiting %.1f s for the retry of a job it ran", worker.name, wait_s
                    )
                    time.sleep(wait_s)
            except StopRequested:
                break
            if worker.stop_signaled:
                break
            worked = worker.work(burst=True, with_scheduler=True, logging_level=logging_level) or worked
        return worked

    return run_supervised(
        runtime,
        make_worker,
        run_loop,
        burst=burst,
        with_scheduler=with_scheduler,
        logging_level=logging_level,
    )
