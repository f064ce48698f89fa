"""Reconcile's Redis-only chores: RQ's leftovers of dead workers whose rows are already settled.

Nothing here changes a row; the row is the truth and RQ's copy is made to match it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rqjobs.broker import rq_internals as rq
from rqjobs.reconcile.report import Row
from rqjobs.status import FINAL
from rqjobs.worker.process import local_process_alive

if TYPE_CHECKING:
    from rqjobs.reconcile.decisions import Pass

log = logging.getLogger("rqjobs.reconcile")


def sweep_started_registries(work: Pass, seen: set[str]) -> None:
    """Release RQ's started entries of dead workers whose rows are final (RQ-side only)."""

    for name in rq.queue_names(work.redis):
        job_ids = rq.started_job_ids(work.redis, work.runtime.queue(name))
        for job_id in sorted(job_ids - seen):
            if not job_id.isdigit():
                continue
            status, worker_name = rq.job_status_and_worker(work.redis, job_id)
            if status != "started":
                continue
            record = work.store.get(int(job_id))
            if record is None or record.status not in FINAL:
                continue
            why = work.view.run_gone_reason(worker_name)
            if why is None:
                continue
            reason = f"RQ still had the job as started by a dead worker ({why}); released to match the row"
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
        if info.get("hostname") == work.view.hostname and pid.isdigit() and int(pid) > 0:
            dead = not local_process_alive(int(pid))
        elif (age_s := rq.heartbeat_age_s(info, work.view.redis_now_s)) is not None and work.view.trusted:
            dead = age_s > overdue_s
        else:
            dead = False
        if dead and rq.release_scheduler_lock(work.redis, lock_key, owner):
            log.info("reconcile: released %s held by scheduler %s, which is gone", lock_key, owner)
