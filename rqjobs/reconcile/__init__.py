"""Reconcile: make every unfinished task row agree with what really happened.

The decorator and the worker record every run they see end. What they cannot see is fixed
here, by every worker once per ``reconcile_interval_s`` (one of them per interval, cluster
wide) and by ``rqjobs reconcile``. The rules are in docs/ARCHITECTURE.md ("Reconcile");
the decisions live in :mod:`rqjobs.reconcile.decisions`.

Safe to run from many processes at once: a Redis lock makes passes take turns, and each
change is a conditional row update on the state it was decided from (status, attempt,
worker, enqueue time) plus, in Redis, a WATCH on the job, so a late or concurrent writer
changes nothing and no job is enqueued twice.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import uuid4

from rqjobs import defaults
from rqjobs.broker.rq_internals import release_job_in_redis, text
from rqjobs.dependencies import DependencyChange, reconcile_dependencies, settle_dependents
from rqjobs.exceptions import ReconcileBusy
from rqjobs.hostpid import host_pid, is_this_host, split_host_pid
from rqjobs.keys import RECONCILE_LOCK_KEY, RECONCILE_TURN_KEY
from rqjobs.reconcile.decisions import Pass
from rqjobs.reconcile.report import Change, ReconcileReport, Row
from rqjobs.status import FINAL, WAITING, TaskStatus
from rqjobs.worker.process import local_process_alive

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.runtime import Runtime

__all__ = ["Change", "ReconcileBusy", "ReconcileReport", "reconcile", "reconcile_if_due", "release_run"]

_RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _lock_token() -> str:
    """``host:pid#random``: whoever finds the lock taken can tell whether its holder lives."""
    return f"{host_pid()}#{uuid4().hex}"


def _holder_is_dead(token: str | None) -> bool:
    """A lock holder on this machine whose process is gone (killed mid-pass) holds nothing."""
    if not token or "#" not in token:
        return False
    holder = split_host_pid(token.split("#", 1)[0])
    return holder is not None and is_this_host(holder[0]) and not local_process_alive(holder[1])


def _holder_is_stuck(redis: Redis, token: str | None) -> bool:
    """A holder whose worker says its main loop is stuck (its beacon stopped vouching): its
    pass is most likely stuck on the same database call, and must not hold every other
    worker's pass up until the lock expires. Passes may overlap safely."""
    if not token or "#" not in token:
        return False
    from rqjobs.keys import liveness_key, worker_state_key
    from rqjobs.worker.liveness import STUCK_STATE

    label = token.split("#", 1)[0]
    state = text(redis.get(worker_state_key(label)))
    return bool(state and state.startswith(STUCK_STATE)) and not redis.exists(liveness_key(label))


def _acquire(redis: Redis, key: str, token: str, ttl_ms: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        if redis.set(key, token, nx=True, px=ttl_ms):
            return True
        holder = text(redis.get(key))
        if holder is not None and (_holder_is_dead(holder) or _holder_is_stuck(redis, holder)):
            redis.eval(_RELEASE_LOCK, 1, key, holder)
            continue
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def reconcile(
    runtime: Runtime,
    *,
    dry_run: bool = False,
    lock: bool = True,
    lock_wait_s: float = defaults.RECONCILE_LOCK_WAIT_S,
) -> ReconcileReport:
    """One reconcile pass now; returns what it changed (or would change, with ``dry_run``).

    With ``lock`` (the default) it waits up to ``lock_wait_s`` for a pass running elsewhere
    and raises :class:`ReconcileBusy` if that one does not finish; without it, passes may
    overlap, which is safe (every change is conditional) but does work twice.
    """
    redis = runtime.redis
    token = _lock_token()
    if lock and not dry_run:
        if not _acquire(
            redis, RECONCILE_LOCK_KEY, token, int(defaults.RECONCILE_LOCK_TTL_S * 1000), lock_wait_s
        ):
            raise ReconcileBusy()
    try:
        return _run_pass(runtime, dry_run)
    finally:
        if lock and not dry_run:
            redis.eval(_RELEASE_LOCK, 1, RECONCILE_LOCK_KEY, token)


def reconcile_if_due(runtime: Runtime, interval_s: float) -> ReconcileReport | None:
    """The worker's periodic pass: at most one per ``interval_s`` across all workers."""
    redis = runtime.redis
    token = _lock_token()
    if not redis.set(RECONCILE_TURN_KEY, token, nx=True, px=max(1, int(interval_s * 1000))):
        return None
    if not _acquire(redis, RECONCILE_LOCK_KEY, token, int(defaults.RECONCILE_LOCK_TTL_S * 1000), 0):
        return None
    try:
        return _run_pass(runtime, False)
    finally:
        redis.eval(_RELEASE_LOCK, 1, RECONCILE_LOCK_KEY, token)


#: what the report calls each move of a dependent
_DEPENDENCY_ACTIONS = {
    "queued": "enqueued",
    "canceled": "canceled",
    "deferred": "deferred again",
    "failed": "failed",
}


def _as_change(moved: DependencyChange, dry_run: bool) -> Change:
    action = _DEPENDENCY_ACTIONS.get(moved.to_status, moved.to_status)
    return Change(moved.task_id, moved.from_status, moved.to_status, action, moved.reason, not dry_run)


def _run_pass(runtime: Runtime, dry_run: bool) -> ReconcileReport:
    """The dependency pass, then the rows' rules, then the dependents of rows they ended.

    Deferred rows whose parents have all finished or one of which ended badly are settled
    first (a worker that died before the release, a parent failed by an earlier pass). A
    parent that this pass fails (its worker died) has its dependents canceled right after
    it, in the same pass: one indexed read per row it ended, so the pass's report follows
    its writes as closely as before.
    """
    early = reconcile_dependencies(runtime, dry_run=dry_run)
    report = Pass(runtime, dry_run=dry_run).run()
    ended = [c.task_id for c in report.changes if c.applied and c.to_status in FINAL]
    report.changes[:0] = [_as_change(moved, dry_run) for moved in early]
    for task_id in ended:
        report.changes += [_as_change(moved, False) for moved in settle_dependents(runtime, task_id)]
    return report


def release_run(
    runtime: Runtime,
    *,
    task_id: int | None,
    job_id: str,
    worker_label: str,
    worker_name: str,
    why: str,
    ended_at: datetime | None = None,
) -> Change | None:
    """Settle one run this worker process watched until its loop broke off (see rqjobs.worker.health).

    A row still ``running`` under ``worker_label`` is handled like a run whose worker died;
    a final row gets RQ's copy of the job released to match. ``ended_at``, when the
    worker saw its horse end, is the end the row records.
    """
    if task_id is None:
        return None
    record = runtime.store.get(task_id)
    if record is None:
        return None
    work = Pass(runtime, dry_run=False)
    work.lost_what = "lost"
    work.lost_detail = "the worker {worker} lost Redis while this attempt ran: {why}"
    work.ended_at = ended_at
    info = work.job_infos([job_id])[job_id]
    if record.status == TaskStatus.RUNNING.value and record.worker == worker_label:
        work.running_row(Row.of(record), info, why, expect_worker_name=worker_name)
    elif record.status in WAITING and info.status == "started" and info.worker_name == worker_name:
        # the attempt ended and was recorded (a retry is due), but RQ could not re-queue it
        work.waiting_but_started(Row.of(record), info, why)
    elif record.status in FINAL and info.status == "started" and info.worker_name == worker_name:
        release_job_in_redis(
            runtime.redis,
            runtime.queue,
            job_id,
            expect_worker_name=worker_name,
            consume_retry=False,
            reason=why,
            row_status=record.status,
        )
    return work.report.changes[0] if work.report.changes else None
