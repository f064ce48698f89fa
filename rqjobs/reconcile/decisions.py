"""The decisions of one reconcile pass: what each unfinished row should say, and the fix.

The rules are in docs/ARCHITECTURE.md ("Reconcile"). Every change is conditional on the
state it was decided from: in the database through :meth:`TaskStore.update_if`, in Redis
through the WATCHed transactions of :mod:`rqjobs.broker.rq_internals`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rqjobs.broker import rq_internals as rq
from rqjobs.broker.connection import is_broker_error
from rqjobs.broker.rq_internals import RQ_FINAL, JobInfo, text
from rqjobs.keys import foreign_job_key, suspect_key
from rqjobs.reconcile.report import Change, ReconcileReport, Row
from rqjobs.reconcile.sweep import release_dead_scheduler_locks, sweep_started_registries
from rqjobs.status import WAITING, TaskStatus
from rqjobs.worker.liveness import LivenessView
from rqjobs.worker.process import label_of_worker_name

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.runtime import Runtime
    from rqjobs.store.repository import TaskRecord

log = logging.getLogger("rqjobs.reconcile")

_RUNNING = TaskStatus.RUNNING.value


class Pass:
    """One pass over the unfinished rows; ``report`` says what it changed."""

    def __init__(self, runtime: Runtime, *, dry_run: bool) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.store = runtime.store
        self.redis: Redis = runtime.redis
        self.dry_run = dry_run
        self.view: LivenessView = LivenessView(self.redis, self.settings, write_marker=not dry_run)
        self.report = ReconcileReport(dry_run=dry_run)
        self.now = datetime.now(timezone.utc)
        self.confirm_s = max(1.0, min(self.settings.reconcile_grace_s, 30.0))
        self._listed: dict[str, set[str]] = {}
        #: how the log names an attempt whose worker is gone (release_run: a worker that lost Redis)
        self.lost_what = "worker died"
        self.lost_detail = "the worker {worker} that ran this attempt is gone: {why}"
        self.lost_reason = "worker {worker} died ({why})"
        #: when the attempt ended, if the caller knows (release_run: the horse was reaped then)
        self.ended_at: datetime | None = None

    # -- reading --------------------------------------------------------------------------

    def _load_rows(self) -> list[Row]:
        cutoff = self.now - timedelta(seconds=self.settings.reconcile_grace_s)
        found = self.store.unsettled(waiting_before=cutoff, columns=list(Row.__dataclass_fields__))
        return [Row(**values) for values in found]

    def job_ids(self, task_ids: list[int]) -> dict[int, str]:
        """The RQ job id of each row: ``str(id)``, or the id of a job enqueued without rqjobs."""
        replies = rq.pipelined(self.redis, task_ids, lambda pipe, task_id: pipe.get(foreign_job_key(task_id)))
        return {task_id: text(foreign) or str(task_id) for task_id, foreign in replies}

    def job_infos(self, job_ids: list[str]) -> dict[str, JobInfo]:
        return rq.job_infos(self.redis, job_ids)

    def _in_queue(self, origin: str, job_id: str) -> bool:
        if origin not in self._listed:
            key = self.runtime.queue(origin).key
            self._listed[origin] = {text(x) or "" for x in self.redis.lrange(key, 0, -1)}
        return job_id in self._listed[origin]

    def _confirmed(self, job_id: str, state: str) -> bool:
        """True once the same odd state was seen ``confirm_s`` ago: a worker may be mid-step."""
        key = suspect_key(job_id)
        seen = text(self.redis.get(key))
        stamp = f"{state}@{self.view.redis_now_s:.0f}"
        if seen is None or seen.split("@")[0] != state:
            if not self.dry_run:
                self.redis.set(key, stamp, ex=max(60, int(self.confirm_s * 10)))
            return False
        return self.view.redis_now_s - float(seen.split("@")[1]) >= self.confirm_s

    # -- writing ----------------------------------------------------------------------------

    def _update(self, row: Row, values: dict[str, Any], log_entry: str | None = None, **expect: Any) -> bool:
        """One conditional UPDATE: only if the row is still as it was when we decided."""
        return self.store.update_if(row.id, {"status": row.status, **expect}, values, log_entry=log_entry)

    def record(self, row: Row, to_status: str, action: str, reason: str, applied: bool = True) -> Change:
        change = Change(row.id, row.status, to_status, action, reason, applied=applied and not self.dry_run)
        self.report.changes.append(change)
        return change

    def _entry(self, row: Row, what: str, detail: str) -> str:
        from rqjobs.store.repository import attempt_log_entry

        return attempt_log_entry(row.attempts, what, detail, where=row.worker or "")

    def _end_attempt(
        self, row: Row, to_status: str, when: datetime | None, what: str, detail: str, **expect: Any
    ) -> bool:
        """running -> queued/scheduled (a retry follows) or failed, like a failed attempt."""
        values: dict[str, Any] = {"status": to_status, "progress": 100}
        if to_status == TaskStatus.FAILED.value:
            values["finished_at"] = self.last_alive(row)
        else:
            values.update(scheduled_for=when, enqueued_at=self.now, finished_at=None)
        return self._update(row, values, self._entry(row, what, detail), **expect)

    # -- deciding ---------------------------------------------------------------------------

    def run(self) -> ReconcileReport:
        rows = self._load_rows()
        self.report.checked = len(rows)
        job_ids = self.job_ids([row.id for row in rows])
        infos = self.job_infos(list(job_ids.values()))
        for row in rows:
            info = infos[job_ids[row.id]]
            try:
                if row.status == _RUNNING and self._horse_ended_quietly(row, info):
                    self.abandon_quiet_run(row, info)
                elif row.status == _RUNNING:
                    self.running_row(row, info, self._run_over(row, info))
                else:
                    self.waiting_row(row, info)
            except Exception as exc:
                if is_broker_error(exc):
                    raise
                log.warning(
                    "reconcile: task %s skipped: %s: %s", row.id, type(exc).__name__, exc, exc_info=True
                )
        sweep_started_registries(self, {job_ids[row.id] for row in rows})
        if not self.dry_run:
            release_dead_scheduler_locks(self)
        return self.report

    def _run_over(self, row: Row, info: JobInfo) -> str | None:
        """Why the run of a ``running`` row can no longer end by itself, or None."""
        dead = self.view.dead_reason(row.worker, row.started_at)
        if dead is None and info.status == "started":
            if label_of_worker_name(info.worker_name) == row.worker:
                dead = self.view.run_gone_reason(info.worker_name, row.started_at)
        return dead

    def _horse_ended_quietly(self, row: Row, info: JobInfo) -> bool:
        """RQ has the job started by a worker loop that lives but has left it (idle, or busy
        with another job): its work horse ended without recording an outcome."""
        return (
            info.status == "started"
            and label_of_worker_name(info.worker_name) == row.worker
            and self.view.run_gone_reason(info.worker_name, row.started_at) is None  # dead too
            and rq.run_left_by_live_worker(self.redis, info.job_id, info.worker_name or "")
        )

    def abandon_quiet_run(self, row: Row, info: JobInfo) -> None:
        why = f"its worker loop {info.worker_name} is alive but no longer runs it: the work horse ended without recording an outcome"
        saved = self.lost_what, self.lost_detail, self.lost_reason
        self.lost_what = "work horse ended without an outcome"
        self.lost_detail = self.lost_reason = "{why}"
        try:
            self.abandon_started(row, info, why, info.worker_name)
        finally:
            self.lost_what, self.lost_detail, self.lost_reason = saved

    def running_row(
        self, row: Row, info: JobInfo, dead: str | None, expect_worker_name: str | None = None
    ) -> None:
        if info.status in RQ_FINAL:
            self.adopt_rq_verdict(row, info)
            return
        if dead is None:
            if not info.exists and self._overdue(row):
                self.fail(
                    row,
                    "lost",
                    "the job vanished from Redis while the row said running, and the run cannot still be "
                    f"going (its timeout of {row.timeout_s} s is long past)",
                )
            return
        if info.status == "started":
            starter = expect_worker_name or info.worker_name
            starter_label = label_of_worker_name(info.worker_name)
            if (
                starter_label is not None
                and starter_label != row.worker
                and self.view.run_gone_reason(info.worker_name) is None
            ):
                return  # another worker runs the job now; its start takes the row over
            self.abandon_started(row, info, dead, starter)
        elif info.status in ("queued", "scheduled", "deferred"):
            to_status = TaskStatus.SCHEDULED.value if info.status == "scheduled" else TaskStatus.QUEUED.value
            if self.dry_run:
                self.record(
                    row,
                    to_status,
                    "re-queued",
                    f"worker {row.worker} died ({dead}); RQ already queued the job",
                )
                return
            detail = self._died_detail(row, dead) + "RQ had already put the job back in its queue."
            if self._end_attempt(
                row, to_status, None, self.lost_what, detail, attempts=row.attempts, worker=row.worker
            ):
                self.record(
                    row,
                    to_status,
                    "re-queued",
                    f"worker {row.worker} died ({dead}); RQ already queued the job",
                )
        elif not info.exists:
            self.abandon_without_job(row, dead)

    def last_alive(self, row: Row) -> datetime:
        """When the attempt of ``row`` was last known to run: the end the row records.

        Not when this pass noticed (TOOK and ``stats`` would count the time nobody ran it):
        the moment the caller saw the horse end, else the worker's last liveness beat,
        never before the attempt started nor after now.
        """
        seen = self.ended_at or self.view.last_seen(row.worker)
        if seen is None:
            return self.now
        if row.started_at is not None:
            started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=timezone.utc)
            seen = max(seen, started)
        return min(seen, self.now)

    def _died_detail(self, row: Row, why: str) -> str:
        alive, noticed = (
            self.last_alive(row).isoformat(timespec="seconds"),
            self.now.isoformat(timespec="seconds"),
        )
        when = (
            f"Last known alive at {alive}; noticed at {noticed}."
            if alive < noticed
            else f"Noticed at {noticed}."
        )
        detail = self.lost_detail.format(worker=row.worker, why=why)
        return f"{detail}. {when} No traceback exists; the task may have stopped at any point.\n"

    def _overdue(self, row: Row) -> bool:
        if row.started_at is None:
            return False
        limit_s = (
            row.timeout_s + 60 + max(self.settings.reconcile_grace_s, 2 * self.settings.worker_liveness_ttl_s)
        )
        return (self.now - row.started_at).total_seconds() > limit_s

    def abandon_started(self, row: Row, info: JobInfo, why: str, worker_name: str | None) -> None:
        """The job is still ``started`` in RQ by a worker that died: release it, then the row."""
        reason = self.lost_reason.format(worker=row.worker, why=why)
        if self.dry_run:
            self.record(
                row, "queued or failed", "released", reason + "; re-queued if retries remain", applied=False
            )
            return
        outcome = rq.release_job_in_redis(
            self.redis,
            self.runtime.queue,
            info.job_id,
            expect_worker_name=worker_name,
            consume_retry=True,
            reason=f"Worker died: {reason}. Released by rqjobs reconcile.",
        )
        if outcome is None:
            return
        to_status, when = outcome
        self._finish_abandon(row, to_status, when, why)

    def _finish_abandon(self, row: Row, to_status: str, when: datetime | None, why: str) -> None:
        if to_status == TaskStatus.FAILED.value:
            tail = "No retries left: the task failed."
            action = "failed"
        elif when is not None:
            tail = f"The job is scheduled to run again at {when.isoformat(timespec='seconds')}."
            action = "re-queued"
        else:
            tail = "The job was queued again."
            action = "re-queued"
        detail = self._died_detail(row, why) + tail
        if self._end_attempt(
            row, to_status, when, self.lost_what, detail, attempts=row.attempts, worker=row.worker
        ):
            self.record(row, to_status, action, self.lost_reason.format(worker=row.worker, why=why))

    def abandon_without_job(self, row: Row, why: str) -> None:
        """The worker died and Redis has no job (it lost its data): the row decides alone."""
        will_retry = row.attempts <= row.max_retries
        when = None
        if will_retry and row.retry_intervals:
            left_before = row.max_retries - row.attempts + 1
            index = max(len(row.retry_intervals) - left_before, 0)
            interval = row.retry_intervals[min(index, len(row.retry_intervals) - 1)]
            when = self.now + timedelta(seconds=interval) if interval else None
        to_status = (
            (TaskStatus.SCHEDULED.value if when else TaskStatus.QUEUED.value)
            if will_retry
            else TaskStatus.FAILED.value
        )
        if self.dry_run:
            self.record(
                row, to_status, "re-queued" if will_retry else "failed", f"worker {row.worker} died ({why})"
            )
            return
        tail = "Redis had no job for it any more; " + (
            "it was enqueued again from the row." if will_retry else "no retries left: the task failed."
        )
        detail = self._died_detail(row, why) + tail
        if not self._end_attempt(
            row, to_status, when, self.lost_what, detail, attempts=row.attempts, worker=row.worker
        ):
            return
        self.record(
            row, to_status, "re-queued" if will_retry else "failed", f"worker {row.worker} died ({why})"
        )
        if will_retry:
            self._submit(row.id, max_retries=row.max_retries - row.attempts, scheduled_for=when)

    def _submit(self, task_id: int, *, max_retries: int, scheduled_for: datetime | None) -> bool:
        from rqjobs.api import submit_job
        from rqjobs.exceptions import EnqueueFailed

        record: TaskRecord | None = self.store.get(task_id)
        if record is None or record.status not in WAITING:
            return False
        self.redis.delete(foreign_job_key(task_id))
        try:
            submit_job(
                self.runtime,
                replace(record, max_retries=max(0, max_retries), scheduled_for=scheduled_for),
            )
        except EnqueueFailed as exc:  # submit_job failed the row, with the reason in its log
            self.record(
                Row.of(record), TaskStatus.FAILED.value, "failed", f"could not enqueue: {exc.message}"
            )
            return False
        return True

    def adopt_rq_verdict(self, row: Row, info: JobInfo) -> None:
        """RQ finished, failed, stopped or canceled the job: the row says the same, with RQ's reason."""
        value, exc_string = rq.verdict(self.redis, info.job_id)
        status = info.status
        if status == "finished":
            value = value if isinstance(value, dict) else {"result": value}
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                value = {"result": repr(value)}
            reason = "RQ recorded the job as finished; the row had not been updated"
            if self.dry_run:
                self.record(row, TaskStatus.FINISHED.value, "finished", reason)
                return
            values = {
                "status": TaskStatus.FINISHED.value,
                "result": value,
                "progress": 100,
                "finished_at": self.now,
            }
            if self._update(row, values, attempts=row.attempts):
                self.record(row, TaskStatus.FINISHED.value, "finished", reason)
            return
        if status == "failed":
            detail = (exc_string or "RQ gave no reason")[-8000:]
            to_status, action, what = TaskStatus.FAILED.value, "failed", "failed"
            reason = "RQ recorded the job as failed: " + (detail.strip().splitlines() or [""])[-1]
            detail = "RQ recorded the job as failed; the row had not been updated. RQ's reason:\n" + detail
        else:
            to_status, action, what = TaskStatus.CANCELED.value, "canceled", "canceled"
            reason = f"the job was {status} in RQ (a stop or cancel command, e.g. from rq-dashboard)"
            detail = reason
        if self.dry_run:
            self.record(row, to_status, action, reason)
            return
        values = {"status": to_status, "progress": 100, "finished_at": self.now}
        if self._update(row, values, self._entry(row, what, detail), attempts=row.attempts):
            self.record(row, to_status, action, reason)

    def fail(self, row: Row, what: str, reason: str) -> None:
        if self.dry_run:
            self.record(row, TaskStatus.FAILED.value, "failed", reason)
            return
        values = {"status": TaskStatus.FAILED.value, "progress": 100, "finished_at": self.now}
        if self._update(row, values, self._entry(row, what, reason), attempts=row.attempts):
            self.record(row, TaskStatus.FAILED.value, "failed", reason)

    def waiting_row(self, row: Row, info: JobInfo) -> None:
        if not info.exists:
            self.outbox(row)
        elif info.status in RQ_FINAL:
            self.adopt_rq_verdict(row, info)
        elif info.status == "started":
            why = self.view.run_gone_reason(info.worker_name)
            if why is not None:
                self.waiting_but_started(row, info, why)
        elif info.status in ("queued", "scheduled") and info.origin:
            self.unlisted(row, info)

    def waiting_but_started(self, row: Row, info: JobInfo, why: str) -> None:
        """RQ has the job started by a worker loop that is over, and the row waits."""
        starter = label_of_worker_name(info.worker_name)
        # Did the task start in that run? Then its attempt was counted and its failure
        # recorded (the row waits for a retry), and only RQ's retry is missing: it uses
        # up one of RQ's retries, as RQ would have. If not, the run never began.
        rq_started = rq.job_started_at(self.redis, info.job_id)
        attempted = (
            row.worker == starter
            and row.started_at is not None
            and rq_started is not None
            and row.started_at >= rq_started
        )
        if attempted:
            reason = (
                f"its worker loop ended ({why}) after attempt {row.attempts} failed and before RQ "
                "re-queued the job; the job was queued again for the retry"
            )
        else:
            reason = f"the worker that took the job ended before the task started ({why}); the job was queued again"
        if self.dry_run:
            self.record(row, row.status, "re-queued", reason)
            return
        outcome = rq.release_job_in_redis(
            self.redis,
            self.runtime.queue,
            info.job_id,
            expect_worker_name=info.worker_name,
            consume_retry=attempted,
            reason=reason,
        )
        if outcome is not None:
            self._update(row, {"enqueued_at": self.now}, enqueued_at=row.enqueued_at)
            self.record(row, row.status, "re-queued", reason)

    def unlisted(self, row: Row, info: JobInfo) -> None:
        """A job RQ calls queued (or scheduled) that sits in no queue, registry or worker."""
        assert info.origin is not None and info.status is not None
        queue = self.runtime.queue(info.origin)
        if info.status == "queued" and self._in_queue(info.origin, info.job_id):
            return
        if info.status == "scheduled" and rq.in_scheduled_registry(self.redis, queue, info.job_id):
            return
        # entries a worker made as it took the job (RQ adds the execution before the fork,
        # the horse marks the job started): a live worker is about to start it

        stale = []
        for member, worker_name in rq.started_entries(self.redis, queue, info.job_id):
            if worker_name is not None and self.view.run_gone_reason(worker_name) is None:
                return
            stale.append(member)
        if not self._confirmed(info.job_id, f"unlisted-{info.status}"):
            return
        reason = f"RQ said {info.status} but the job was in no queue (its worker died taking it); put back in queue {info.origin}"
        if self.dry_run:
            self.record(row, TaskStatus.QUEUED.value, "re-queued", reason)
            return
        if rq.repush_in_redis(self.redis, self.runtime.queue, info.job_id, info.status, stale):
            self.redis.delete(suspect_key(info.job_id))
            self._update(
                row, {"status": TaskStatus.QUEUED.value, "scheduled_for": None, "enqueued_at": self.now}
            )
            self.record(row, TaskStatus.QUEUED.value, "re-queued", reason)

    def outbox(self, row: Row) -> None:
        """A waiting row past its grace period with no job in Redis: enqueue it again from the row."""
        from rqjobs.tasks.registry import registered_tasks

        registered = row.name in registered_tasks()
        if not registered:
            reason = f"its job is not in Redis and task {row.name!r} is not registered here, so it cannot be enqueued again"
        else:
            reason = (
                "its job was not in Redis (lost between the commit and the enqueue, or Redis lost its data)"
            )
        to_status = row.status if registered else TaskStatus.FAILED.value
        action = "enqueued again" if registered else "failed"
        if self.dry_run:
            self.record(row, to_status, action, reason)
            return
        # claim the row first: of two reconcilers, only the one that moves enqueued_at goes on
        if not self._update(row, {"enqueued_at": self.now}, enqueued_at=row.enqueued_at):
            return
        if rq.job_exists(self.redis, str(row.id)):
            return  # the original enqueue landed after all
        claimed = replace(row, enqueued_at=self.now)
        if not registered:
            values = {"status": TaskStatus.FAILED.value, "progress": 100, "finished_at": self.now}
            if self._update(
                claimed, values, self._entry(row, "was not enqueued", reason), enqueued_at=self.now
            ):
                self.record(row, to_status, action, reason)
            return
        if self._submit(row.id, max_retries=row.max_retries - row.attempts, scheduled_for=row.scheduled_for):
            self.record(row, to_status, action, reason)
