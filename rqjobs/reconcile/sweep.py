"""Reconcile's Redis-only chores: RQ's leftovers of dead workers whose rows are already settled.

Nothing here changes a row; the row is the truth and RQ's copy is made to match it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rqjobs.broker import rq_internals as rq
from rqjobs.hostpid import is_this_host
from rqjobs.reconcile.report import Row
from rqjobs.status import FINAL
from rqjobs.worker.process import local_process_alive

if TYPE_CHECKING:
    from rq.queue import Queue

    from rqjobs.reconcile.decisions import Pass
    from rqjobs.store.repository import TaskRecord

log = logging.getLogger("rqjobs.reconcile")


def sweep_started_registries(work: Pass, seen: set[str]) -> None:
    """Release RQ's started entries of dead workers whose rows are final (RQ-side only)."""

    for name in rq.queue_names(work.redis):
        queue = work.runtime.queue(name)
        job_ids = rq.started_job_ids(work.redis, queue)
        for job_id in sorted(job_ids - seen):
            if not job_id.isdigit():
                continue
            status, worker_name = rq.job_status_and_worker(work.redis, job_id)
            record = work.store.get(int(job_id))
            if record is None or record.status not in FINAL:
                continue
            if status != "started":
                _drop_entries_of_ended_runs(work, queue, record)
                continue
            why = work.view.run_gone_reason(worker_name)
            if why is None and worker_name and rq.run_left_by_live_worker(work.redis, job_id, worker_name):
                why = f"its worker loop {worker_name} lives but no longer runs it"
            if why is None:
                continue
            reason = (
                f"RQ still had the job as started by a run that is over ({why}); released to match the row"
            )
            if work.dry_run:
                work.record(Row.of(record), record.status, "released in Redis", reason)
                continue
            outcome = rq.release_job_in_redis(
                work.redis,
                work.runtime.queue,
                job_id,
                expect_worker_name=worker_name,
                consume_retry=False,
                reason=f"Worker died ({why}); the task row says {record.status}.",
                row_status=record.status,
            )
            if outcome is not None:
                work.record(Row.of(record), record.status, "released in Redis", reason)


def _drop_entries_of_ended_runs(work: Pass, queue: Queue, record: TaskRecord) -> None:
    """A final row whose job RQ no longer runs, with started entries of worker runs that are over.

    RQ's worker adds the execution (a started entry) before it forks; a worker that dies
    before its horse starts leaves it behind. An entry whose execution hash has expired
    (its worker died over a heartbeat TTL ago) belongs to no run at all. The job is queued again (by reconcile, or by
    RQ's intermediate-queue cleanup), another worker runs it to its end, and RQ removes that
    run's entry only: the dead run's stays until RQ's cleanup, long after the row is final.
    """
    for member, execution_worker in rq.started_entries(work.redis, queue, str(record.id)):
        if execution_worker is None:
            # the execution hash is gone: it expired (no worker refreshed it for its heartbeat
            # TTL) or was deleted; RQ writes it in one transaction with the entry, so no run
            # that lives has an entry without it. Skipping it left the entry for good.
            why: str | None = "its execution record had expired"
        else:
            why = work.view.run_gone_reason(execution_worker)
        if why is None:
            continue
        reason = f"RQ kept a started entry of a worker run that is over ({why}); removed to match the row"
        if work.dry_run or rq.drop_started_entry(work.redis, queue, member):
            work.record(Row.of(record), record.status, "released in Redis", reason)


def release_dead_scheduler_locks(work: Pass) -> None:
    """Free a queue's scheduler lock whose scheduler process died with its worker.

    RQ's lock lives a minute after its holder's last refresh: until then no other worker
    may start a scheduler, and retries with an interval and ``--in`` jobs wait. A
    holder on this machine whose process is gone, or one anywhere whose heartbeat is
    long overdue, no longer holds it.
    """
    overdue_s = max(30.0, 3 * work.settings.worker_liveness_ttl_s)
    for lock_key, owner, info in rq.scheduler_locks(work.redis):
        pid = info.get("pid") or ""
        if is_this_host(info.get("hostname") or "") and pid.isdigit() and int(pid) > 0:
            dead = not local_process_alive(int(pid))
        elif (age_s := rq.heartbeat_age_s(info, work.view.redis_now_s)) is not None and work.view.trusted:
            dead = age_s > overdue_s
        else:
            dead = False
        if dead and rq.release_scheduler_lock(work.redis, lock_key, owner):
            log.info("reconcile: released %s held by scheduler %s, which is gone", lock_key, owner)
