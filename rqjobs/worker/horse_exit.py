"""A work horse that exits with status 0 without the job's outcome recorded.

RQ's monitor takes a horse's exit status 0 for success and looks no further: a task that
calls ``os._exit(0)``, or execs a program that exits 0, ends its horse before the decorator
or RQ recorded anything, and both the row (``running``) and RQ's job (``started``, in the
started registry) then wait for RQ's 10-minute maintenance. Any other exit status or a
signal already reaches :meth:`RqjobsWorker.handle_work_horse_killed`; this module handles the
quiet one the same way, at once: the row fails (or waits for its retry) and RQ agrees.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rqjobs.broker import rq_internals as rq
from rqjobs.broker.job import task_id_of
from rqjobs.status import FINAL

if TYPE_CHECKING:
    from rq.job import Job
    from rq.queue import Queue

    from rqjobs.worker.rq_worker import RqjobsWorker

log = logging.getLogger("rqjobs.worker")

#: appended to "work horse exited with status N" when the horse ended before any outcome
NO_OUTCOME = "before the task recorded an outcome"


def settle_quiet_exit(worker: RqjobsWorker, job: Job, queue: Queue, retpid: int | None, ret_val: int) -> None:
    """After a horse exited 0: if RQ still has the job started by this worker, nothing
    recorded its end. Then fail the attempt as for a horse that died (retries apply), or,
    when the row is already final (the horse ended between the row's write and RQ's),
    release RQ's copy to match the row.

    A database error is logged, not raised: the worker goes on, and reconcile settles the
    row later (a job RQ still calls started by a worker that is idle is a run that ended).
    """
    try:
        _settle(worker, job, queue, retpid, ret_val)
    except Exception as exc:
        from rqjobs.broker.connection import is_broker_error

        if is_broker_error(exc):
            raise
        log.exception("could not record the quiet end of job %s's work horse", job.id)


def _settle(worker: RqjobsWorker, job: Job, queue: Queue, retpid: int | None, ret_val: int) -> None:
    status, worker_name = rq.job_status_and_worker(worker.connection, job.id)
    if status != "started" or worker_name != worker.name:
        return  # the horse filed the job itself (finished, failed, retried): the normal end
    task_id = task_id_of(job)
    record = worker.store.get(task_id) if task_id is not None else None
    if record is not None and record.status in FINAL:
        rq.release_job_in_redis(
            worker.connection,
            worker.runtime.queue,
            job.id,
            expect_worker_name=worker.name,
            consume_retry=False,
            reason=f"the work horse exited with status 0; the task row says {record.status}",
            row_status=record.status,
        )
        return
    if record is not None and record.status == "running" and record.worker != worker.label:
        return  # another worker's attempt owns the row now; reconcile settles RQ's copy
    from rq.utils import now

    exc_string = f"Work-horse exited with status 0 ({NO_OUTCOME}); waitpid returned {ret_val}"
    worker.log.warning("Worker %s: job %s failed (%s)", worker.name, job.id, exc_string)
    job.ended_at = now()
    worker.handle_work_horse_killed(job, retpid or 0, ret_val, None)
    worker.handle_job_failure(job, queue=queue, exc_string=exc_string)


def describe_end(how: str, ret_val: Any) -> str:
    """``work horse killed by SIGKILL ...`` / ``work horse exited with status 3 before ...``."""
    import os

    if isinstance(ret_val, int) and os.WIFEXITED(ret_val):
        return f"work horse {how} {NO_OUTCOME}"
    return f"work horse {how}"
