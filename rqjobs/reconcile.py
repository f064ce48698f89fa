"""Reconcile: make every unfinished task row agree with what really happened (DESIGN section 3).

The decorator and the worker record every run they see end. What they cannot see is
fixed here, by every worker once per ``reconcile_interval_s`` (one of them per interval, cluster
wide) and by ``rqjobs reconcile``:

* a ``running`` row whose worker died (its liveness key is gone and, on this machine, its
  process too; see :mod:`rqjobs.worker_health`): the job is released in Redis and the row
  re-queued when retries remain, else failed; the log says the worker died;
* a row whose job RQ has finished, failed, stopped or canceled: the row takes RQ's verdict
  and reason (the row's own write was lost, e.g. the database was unreachable);
* a ``queued``/``scheduled`` row older than ``reconcile_grace_s`` with no job in Redis (the
  process died between the commit and the enqueue, or Redis lost its data): the row is the
  outbox, its job is enqueued again, or the row failed when that cannot be done;
* a job that RQ says is queued but that sits in no queue (its worker died between taking
  it and starting it): put back in its queue once the same state is seen twice;
* RQ's started registry entries of dead workers whose rows are already final: released, so
  RQ's view matches without waiting for its 10-minute maintenance pass.

Safe to run from many processes at once: a Redis lock makes passes take turns, and each
change is a conditional row update on the state it was decided from (status, attempt,
worker, enqueue time) plus, in Redis, a WATCH on the job, so a late or concurrent writer
changes nothing and no job is enqueued twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from rqjobs import defaults
from rqjobs.exceptions import ReconcileBusy
from rqjobs.status import FINAL, WAITING, TaskStatus

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.runtime import Runtime
    from rqjobs.store.repository import TaskRecord
    from rqjobs.worker_health import LivenessView

log = logging.getLogger("rqjobs.reconcile")

LOCK_KEY = "rqjobs:reconcile:lock"
TURN_KEY = "rqjobs:reconcile:turn"
SUSPECT_KEY_PREFIX = "rqjobs:reconcile:suspect:"
#: the RQ job id of a row made for a job enqueued without rqjobs (its id is not the row's)
FOREIGN_JOB_KEY = "rqjobs:task-job:{}"

_RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RQ_FINAL = ("finished", "failed", "stopped", "canceled")
_RUNNING = TaskStatus.RUNNING.value


@dataclass(frozen=True)
class Change:
    """One thing reconcile changed (or, in a dry run, would change)."""

    task_id: int
    from_status: str
    to_status: str
    action: str
    reason: str
    applied: bool = True

    def describe(self) -> str:
        states = (
            self.from_status
            if self.from_status == self.to_status
            else f"{self.from_status} -> {self.to_status}"
        )
        verb = self.action if self.applied else f"would be {self.action}"
        return f"task {self.task_id} ({states}) {verb}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "from": self.from_status,
            "to": self.to_status,
            "action": self.action,
            "reason": self.reason,
            "applied": self.applied,
        }


@dataclass
class ReconcileReport:
    dry_run: bool
    checked: int = 0
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    """The columns reconcile decides on; a conditional update checks them again."""

    id: int
    name: str
    status: str
    queue: str
    attempts: int
    max_retries: int
    retry_intervals: list[int] | None
    timeout_s: int
    worker: str | None
    enqueued_at: datetime | None
    scheduled_for: datetime | None
    started_at: datetime | None

    @classmethod
    def of(cls, record: Any) -> _Row:
        return cls(**{name: getattr(record, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class _JobInfo:
    job_id: str
    status: str | None
    worker_name: str | None
    origin: str | None

    @property
    def exists(self) -> bool:
        return self.status is not None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_rq_time(raw: Any) -> datetime | None:
    """A timestamp as RQ writes it into a job hash (UTC)."""
    from rq.utils import utcparse

    text = _text(raw)
    if not text:
        return None
    try:
        return utcparse(text)
    except ValueError:
        return None


def _now() -> datetime:
    from rqjobs.store.models import utcnow

    return utcnow()


# -- Redis side ------------------------------------------------------------------------------


def release_job_in_redis(
    runtime: Runtime,
    job_id: str,
    *,
    expect_worker_name: str | None,
    consume_retry: bool,
    reason: str,
    row_status: str | None = None,
) -> tuple[str, datetime | None] | None:
    """Take a started job away from the worker that died running it.

    Atomic (WATCH on the job): only a job still ``started`` by ``expect_worker_name`` is
    touched. Its started-registry entries and executions go; then, when the row is final
    (``row_status``), RQ's status follows the row; otherwise the job is queued again (or
    scheduled after its retry interval) when it has retries left, else failed with
    ``reason``. ``consume_retry=False`` re-queues a job whose task never started.

    Returns ``(status, scheduled_for)``, or None when the job changed under us (someone
    else released it, or another worker runs it now).
    """
    from redis.exceptions import WatchError
    from rq.job import JobStatus
    from rq.serializers import JSONSerializer

    from rqjobs.broker.job import RqjobsJob

    redis = runtime.redis
    job_key = f"rq:job:{job_id}"
    for _attempt in range(5):
        with redis.pipeline() as pipe:
            try:
                pipe.watch(job_key)
                status, worker_name, origin = (
                    _text(v) for v in pipe.hmget(job_key, "status", "worker_name", "origin")
                )
                if status != JobStatus.STARTED.value:
                    return None
                if expect_worker_name is not None and worker_name != expect_worker_name:
                    return None
                job = RqjobsJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
                queue = runtime.queue(origin or job.origin)
                queue.get_redis_server_version()  # cached: nothing but the writes below goes in MULTI
                started_key = queue.started_job_registry.key
                members = [
                    m
                    for m in (_text(x) for x in pipe.zrange(started_key, 0, -1))
                    if m and m.rsplit(":", 1)[0] == job_id
                ]
                pipe.multi()
                for member in members:
                    pipe.zrem(started_key, member)
                    pipe.delete(f"rq:execution:{member}")
                pipe.delete(f"rq:executions:{job_id}")
                outcome: tuple[str, datetime | None]
                if row_status in FINAL:
                    rq_status = {
                        TaskStatus.FINISHED.value: JobStatus.FINISHED,
                        TaskStatus.FAILED.value: JobStatus.FAILED,
                    }.get(row_status or "", JobStatus.CANCELED)
                    job.set_status(rq_status, pipeline=pipe)
                    if rq_status == JobStatus.FAILED:
                        job._handle_failure(reason, pipe, worker_name="")
                    outcome = (str(row_status), None)
                elif not consume_retry or (job.retries_left or 0) > 0:
                    interval = job.get_retry_interval() if consume_retry else 0
                    if consume_retry:
                        job.retries_left = (job.retries_left or 0) - 1
                    if interval:
                        when = _now() + timedelta(seconds=interval)
                        # queue.schedule_job would write the registry outside this transaction
                        pipe.sadd(queue.redis_queues_keys, queue.key)
                        job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
                        job.save(pipeline=pipe)
                        pipe.zadd(queue.scheduled_job_registry.key, {job_id: int(when.timestamp())})
                        outcome = (TaskStatus.SCHEDULED.value, when)
                    else:
                        pipe.lrem(queue.key, 0, job_id)  # never twice in the queue
                        queue._enqueue_job(job, pipeline=pipe)
                        outcome = (TaskStatus.QUEUED.value, None)
                else:
                    job.set_status(JobStatus.FAILED, pipeline=pipe)
                    job._handle_failure(reason, pipe, worker_name="")
                    outcome = (TaskStatus.FAILED.value, None)
                pipe.execute()
                return outcome
            except WatchError:
                continue
    return None


def _repush_in_redis(runtime: Runtime, job_id: str, expect_status: str, stale: list[str]) -> bool:
    """Put a job that sits in no queue back at the end of its queue (atomically).

    ``stale`` are its started-registry entries left by workers that died before the task
    started; they go too. No new entry can appear meanwhile: no worker can take a job that
    is in no queue.
    """
    from redis.exceptions import WatchError
    from rq.job import JobStatus

    redis = runtime.redis
    job_key = f"rq:job:{job_id}"
    for _attempt in range(5):
        with redis.pipeline() as pipe:
            try:
                pipe.watch(job_key)
                status, origin = (_text(v) for v in pipe.hmget(job_key, "status", "origin"))
                if status != expect_status or not origin:
                    return False
                queue = runtime.queue(origin)
                if job_id in {_text(x) for x in pipe.lrange(queue.key, 0, -1)}:
                    return False
                if pipe.zscore(queue.scheduled_job_registry.key, job_id) is not None:
                    return False
                pipe.multi()
                for member in stale:
                    pipe.zrem(queue.started_job_registry.key, member)
                    pipe.delete(f"rq:execution:{member}")
                pipe.lrem(queue.intermediate_queue_key, 0, job_id)
                pipe.hset(job_key, "status", JobStatus.QUEUED.value)
                pipe.rpush(queue.key, job_id)
                pipe.execute()
                return True
            except WatchError:
                continue
    return False


# -- the pass --------------------------------------------------------------------------------


class _Pass:
    def __init__(self, runtime: Runtime, *, dry_run: bool) -> None:
        from rqjobs.worker_health import LivenessView

        self.runtime = runtime
        self.settings = runtime.settings
        self.store = runtime.store
        self.redis: Redis = runtime.redis
        self.dry_run = dry_run
        self.view: LivenessView = LivenessView(self.redis, self.settings, write_marker=not dry_run)
        self.report = ReconcileReport(dry_run=dry_run)
        self.now = _now()
        self.confirm_s = max(1.0, min(self.settings.reconcile_grace_s, 30.0))
        self._listed: dict[str, set[str]] = {}
        #: how the log names an attempt whose worker is gone (release_run: a worker that lost Redis)
        self.lost_what = "worker died"
        self.lost_detail = "the worker {worker} that ran this attempt is gone: {why}"

    # -- reading --------------------------------------------------------------------------

    def _load_rows(self) -> list[_Row]:
        from sqlalchemy import and_, or_, select

        from rqjobs.store.models import Task

        c = Task.__table__.c
        cutoff = self.now - timedelta(seconds=self.settings.reconcile_grace_s)
        columns = [c[name] for name in _Row.__dataclass_fields__]
        stmt = (
            select(*columns)
            .where(
                or_(
                    c.status == _RUNNING,
                    and_(c.status.in_(list(WAITING)), or_(c.enqueued_at < cutoff, c.enqueued_at.is_(None))),
                )
            )
            .order_by(c.id)
        )
        with self.store.engine.connect().execution_options(rqjobs_readonly=True) as conn:
            return [_Row(**dict(row._mapping)) for row in conn.execute(stmt)]

    def _pipelined(self, items: list[Any], command: Callable[[Any, Any], Any]) -> list[tuple[Any, Any]]:
        """``command(pipe, item)`` for every item, 1000 to a round trip; (item, reply) pairs."""
        out: list[tuple[Any, Any]] = []
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            pipe = self.redis.pipeline(transaction=False)
            for item in chunk:
                command(pipe, item)
            out.extend(zip(chunk, pipe.execute(), strict=True))
        return out

    def job_ids(self, task_ids: list[int]) -> dict[int, str]:
        """The RQ job id of each row: ``str(id)``, or the id of a job enqueued without rqjobs."""
        replies = self._pipelined(task_ids, lambda pipe, task_id: pipe.get(FOREIGN_JOB_KEY.format(task_id)))
        return {task_id: _text(foreign) or str(task_id) for task_id, foreign in replies}

    def job_infos(self, job_ids: list[str]) -> dict[str, _JobInfo]:
        replies = self._pipelined(
            job_ids, lambda pipe, job_id: pipe.hmget(f"rq:job:{job_id}", "status", "worker_name", "origin")
        )
        return {
            job_id: _JobInfo(job_id, _text(status), _text(worker_name), _text(origin))
            for job_id, (status, worker_name, origin) in replies
        }

    def _in_queue(self, origin: str, job_id: str) -> bool:
        if origin not in self._listed:
            key = self.runtime.queue(origin).key
            self._listed[origin] = {_text(x) or "" for x in self.redis.lrange(key, 0, -1)}
        return job_id in self._listed[origin]

    def _confirmed(self, job_id: str, state: str) -> bool:
        """True once the same odd state was seen ``confirm_s`` ago: a worker may be mid-step."""
        key = SUSPECT_KEY_PREFIX + job_id
        seen = _text(self.redis.get(key))
        stamp = f"{state}@{self.view.redis_now_s:.0f}"
        if seen is None or seen.split("@")[0] != state:
            if not self.dry_run:
                self.redis.set(key, stamp, ex=max(60, int(self.confirm_s * 10)))
            return False
        return self.view.redis_now_s - float(seen.split("@")[1]) >= self.confirm_s

    # -- writing ----------------------------------------------------------------------------

    def _update(self, row: _Row, values: dict[str, Any], log_entry: str | None = None, **expect: Any) -> bool:
        """One conditional UPDATE: only if the row is still as it was when we decided."""
        from sqlalchemy import func, update

        from rqjobs.store.models import Task

        c = Task.__table__.c
        conditions = [c.id == row.id]
        for name, value in {"status": row.status, **expect}.items():
            conditions.append(c[name].is_(None) if value is None else c[name] == value)
        if log_entry is not None:
            values = {**values, "log": func.coalesce(c.log, "") + log_entry}
        with self.store.engine.begin() as conn:
            return conn.execute(update(Task.__table__).where(*conditions).values(**values)).rowcount == 1

    def _record(self, row: _Row, to_status: str, action: str, reason: str, applied: bool = True) -> Change:
        change = Change(row.id, row.status, to_status, action, reason, applied=applied and not self.dry_run)
        self.report.changes.append(change)
        return change

    def _entry(self, row: _Row, what: str, detail: str) -> str:
        from rqjobs.store.repository import attempt_log_entry

        return attempt_log_entry(row.attempts, what, detail, where=row.worker or "")

    def _end_attempt(
        self, row: _Row, to_status: str, when: datetime | None, what: str, detail: str, **expect: Any
    ) -> bool:
        """running -> queued/scheduled (a retry follows) or failed, like a failed attempt."""
        values: dict[str, Any] = {"status": to_status, "progress": 100}
        if to_status == TaskStatus.FAILED.value:
            values["finished_at"] = self.now
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
                if row.status == _RUNNING:
                    self.running_row(row, info, self._run_over(row, info))
                else:
                    self.waiting_row(row, info)
            except Exception as exc:
                from rqjobs.worker_health import is_broker_error

                if is_broker_error(exc):
                    raise
                log.warning(
                    "reconcile: task %s skipped: %s: %s", row.id, type(exc).__name__, exc, exc_info=True
                )
        self.sweep_started_registries({job_ids[row.id] for row in rows})
        if not self.dry_run:
            self.release_dead_scheduler_locks()
        return self.report

    def _run_over(self, row: _Row, info: _JobInfo) -> str | None:
        """Why the run of a ``running`` row can no longer end by itself, or None."""
        dead = self.view.dead_reason(row.worker, row.started_at)
        if dead is None and info.status == "started":
            from rqjobs.worker_health import label_of_worker_name

            if label_of_worker_name(info.worker_name) == row.worker:
                dead = self.view.run_gone_reason(info.worker_name, row.started_at)
        return dead

    def running_row(
        self, row: _Row, info: _JobInfo, dead: str | None, expect_worker_name: str | None = None
    ) -> None:
        if info.status in _RQ_FINAL:
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
            from rqjobs.worker_health import label_of_worker_name

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
                self._record(
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
                self._record(
                    row,
                    to_status,
                    "re-queued",
                    f"worker {row.worker} died ({dead}); RQ already queued the job",
                )
        elif not info.exists:
            self.abandon_without_job(row, dead)

    def _died_detail(self, row: _Row, why: str) -> str:
        return (
            self.lost_detail.format(worker=row.worker, why=why)
            + ". No traceback exists; the task may have stopped at any point.\n"
        )

    def _overdue(self, row: _Row) -> bool:
        if row.started_at is None:
            return False
        limit_s = (
            row.timeout_s + 60 + max(self.settings.reconcile_grace_s, 2 * self.settings.worker_liveness_ttl_s)
        )
        return (self.now - row.started_at).total_seconds() > limit_s

    def abandon_started(self, row: _Row, info: _JobInfo, why: str, worker_name: str | None) -> None:
        """The job is still ``started`` in RQ by a worker that died: release it, then the row."""
        reason = f"worker {row.worker} died ({why})"
        if self.dry_run:
            self._record(
                row, "queued or failed", "released", reason + "; re-queued if retries remain", applied=False
            )
            return
        outcome = release_job_in_redis(
            self.runtime,
            info.job_id,
            expect_worker_name=worker_name,
            consume_retry=True,
            reason=f"Worker died: {reason}. Released by rqjobs reconcile.",
        )
        if outcome is None:
            return
        to_status, when = outcome
        self._finish_abandon(row, to_status, when, why)

    def _finish_abandon(self, row: _Row, to_status: str, when: datetime | None, why: str) -> None:
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
            self._record(row, to_status, action, f"worker {row.worker} died ({why})")

    def abandon_without_job(self, row: _Row, why: str) -> None:
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
            self._record(
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
        self._record(
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
        self.redis.delete(FOREIGN_JOB_KEY.format(task_id))
        try:
            submit_job(
                self.runtime,
                replace(record, max_retries=max(0, max_retries), scheduled_for=scheduled_for),
            )
        except EnqueueFailed as exc:  # submit_job failed the row, with the reason in its log
            self._record(
                _Row.of(record), TaskStatus.FAILED.value, "failed", f"could not enqueue: {exc.message}"
            )
            return False
        return True

    def adopt_rq_verdict(self, row: _Row, info: _JobInfo) -> None:
        """RQ finished, failed, stopped or canceled the job: the row says the same, with RQ's reason."""
        from rq.results import Result
        from rq.serializers import JSONSerializer

        from rqjobs.broker.job import RqjobsJob

        job = RqjobsJob.fetch(info.job_id, connection=self.redis, serializer=JSONSerializer)
        result = job.latest_result()
        status = info.status
        if status == "finished":
            value = (
                result.return_value if result is not None and result.type == Result.Type.SUCCESSFUL else None
            )
            value = value if isinstance(value, dict) else {"result": value}
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                value = {"result": repr(value)}
            reason = "RQ recorded the job as finished; the row had not been updated"
            if self.dry_run:
                self._record(row, TaskStatus.FINISHED.value, "finished", reason)
                return
            values = {
                "status": TaskStatus.FINISHED.value,
                "result": value,
                "progress": 100,
                "finished_at": self.now,
            }
            if self._update(row, values, attempts=row.attempts):
                self._record(row, TaskStatus.FINISHED.value, "finished", reason)
            return
        if status == "failed":
            detail = (
                result.exc_string if result is not None and result.exc_string else None
            ) or "RQ gave no reason"
            detail = detail[-8000:]
            to_status, action, what = TaskStatus.FAILED.value, "failed", "failed"
            reason = "RQ recorded the job as failed: " + (detail.strip().splitlines() or [""])[-1]
            detail = "RQ recorded the job as failed; the row had not been updated. RQ's reason:\n" + detail
        else:
            to_status, action, what = TaskStatus.CANCELED.value, "canceled", "canceled"
            reason = f"the job was {status} in RQ (a stop or cancel command, e.g. from rq-dashboard)"
            detail = reason
        if self.dry_run:
            self._record(row, to_status, action, reason)
            return
        values = {"status": to_status, "progress": 100, "finished_at": self.now}
        if self._update(row, values, self._entry(row, what, detail), attempts=row.attempts):
            self._record(row, to_status, action, reason)

    def fail(self, row: _Row, what: str, reason: str) -> None:
        if self.dry_run:
            self._record(row, TaskStatus.FAILED.value, "failed", reason)
            return
        values = {"status": TaskStatus.FAILED.value, "progress": 100, "finished_at": self.now}
        if self._update(row, values, self._entry(row, what, reason), attempts=row.attempts):
            self._record(row, TaskStatus.FAILED.value, "failed", reason)

    def waiting_row(self, row: _Row, info: _JobInfo) -> None:
        if not info.exists:
            self.outbox(row)
        elif info.status in _RQ_FINAL:
            self.adopt_rq_verdict(row, info)
        elif info.status == "started":
            why = self.view.run_gone_reason(info.worker_name)
            if why is not None:
                self.waiting_but_started(row, info, why)
        elif info.status in ("queued", "scheduled") and info.origin:
            self.unlisted(row, info)

    def waiting_but_started(self, row: _Row, info: _JobInfo, why: str) -> None:
        """RQ has the job started by a worker loop that is over, and the row waits."""
        from rqjobs.worker_health import label_of_worker_name

        starter = label_of_worker_name(info.worker_name)
        # Did the task start in that run? Then its attempt was counted and its failure
        # recorded (the row waits for a retry), and only RQ's retry is missing: it uses
        # up one of RQ's retries, as RQ would have. If not, the run never began.
        rq_started = _parse_rq_time(self.redis.hget(f"rq:job:{info.job_id}", "started_at"))
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
            self._record(row, row.status, "re-queued", reason)
            return
        outcome = release_job_in_redis(
            self.runtime,
            info.job_id,
            expect_worker_name=info.worker_name,
            consume_retry=attempted,
            reason=reason,
        )
        if outcome is not None:
            self._update(row, {"enqueued_at": self.now}, enqueued_at=row.enqueued_at)
            self._record(row, row.status, "re-queued", reason)

    def unlisted(self, row: _Row, info: _JobInfo) -> None:
        """A job RQ calls queued (or scheduled) that sits in no queue, registry or worker."""
        assert info.origin is not None
        queue = self.runtime.queue(info.origin)
        if info.status == "queued" and self._in_queue(info.origin, info.job_id):
            return
        if (
            info.status == "scheduled"
            and self.redis.zscore(queue.scheduled_job_registry.key, info.job_id) is not None
        ):
            return
        # entries a worker made as it took the job (RQ adds the execution before the fork,
        # the horse marks the job started): a live worker is about to start it

        stale = []
        for member in self.redis.zrange(queue.started_job_registry.key, 0, -1):
            member = _text(member) or ""
            if member.rsplit(":", 1)[0] != info.job_id:
                continue
            worker_name = _text(self.redis.hget(f"rq:execution:{member}", "worker_name"))
            if worker_name is not None and self.view.run_gone_reason(worker_name) is None:
                return
            stale.append(member)
        if not self._confirmed(info.job_id, f"unlisted-{info.status}"):
            return
        reason = f"RQ said {info.status} but the job was in no queue (its worker died taking it); put back in queue {info.origin}"
        if self.dry_run:
            self._record(row, TaskStatus.QUEUED.value, "re-queued", reason)
            return
        if _repush_in_redis(self.runtime, info.job_id, info.status, stale):
            self.redis.delete(SUSPECT_KEY_PREFIX + info.job_id)
            self._update(
                row, {"status": TaskStatus.QUEUED.value, "scheduled_for": None, "enqueued_at": self.now}
            )
            self._record(row, TaskStatus.QUEUED.value, "re-queued", reason)

    def outbox(self, row: _Row) -> None:
        """A waiting row past its grace period with no job in Redis: enqueue it again from the row."""
        from rqjobs.tasks.commons import registered_tasks

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
            self._record(row, to_status, action, reason)
            return
        # claim the row first: of two reconcilers, only the one that moves enqueued_at goes on
        if not self._update(row, {"enqueued_at": self.now}, enqueued_at=row.enqueued_at):
            return
        if self.redis.exists(f"rq:job:{row.id}"):
            return  # the original enqueue landed after all
        claimed = replace(row, enqueued_at=self.now)
        if not registered:
            values = {"status": TaskStatus.FAILED.value, "progress": 100, "finished_at": self.now}
            if self._update(
                claimed, values, self._entry(row, "was not enqueued", reason), enqueued_at=self.now
            ):
                self._record(row, to_status, action, reason)
            return
        if self._submit(row.id, max_retries=row.max_retries - row.attempts, scheduled_for=row.scheduled_for):
            self._record(row, to_status, action, reason)

    def sweep_started_registries(self, seen: set[str]) -> None:
        """Release RQ's started entries of dead workers whose rows are final (RQ-side only)."""

        queue_keys = [_text(k) or "" for k in self.redis.smembers("rq:queues")]
        for queue_key in queue_keys:
            name = queue_key.removeprefix("rq:queue:")
            started_key = self.runtime.queue(name).started_job_registry.key
            job_ids = {(_text(m) or "").rsplit(":", 1)[0] for m in self.redis.zrange(started_key, 0, -1)}
            for job_id in sorted(job_ids - seen):
                if not job_id.isdigit():
                    continue
                status, worker_name = (
                    _text(v) for v in self.redis.hmget(f"rq:job:{job_id}", "status", "worker_name")
                )
                if status != "started":
                    continue
                record = self.store.get(int(job_id))
                if record is None or record.status not in FINAL:
                    continue
                why = self.view.run_gone_reason(worker_name)
                if why is None:
                    continue
                reason = (
                    f"RQ still had the job as started by a dead worker ({why}); released to match the row"
                )
                if self.dry_run:
                    self._record(_Row.of(record), record.status, "released in Redis", reason)
                    continue
                outcome = release_job_in_redis(
                    self.runtime,
                    job_id,
                    expect_worker_name=worker_name,
                    consume_retry=False,
                    reason=f"Worker died ({why}); the task row says {record.status}.",
                    row_status=record.status,
                )
                if outcome is not None:
                    self._record(_Row.of(record), record.status, "released in Redis", reason)

    def release_dead_scheduler_locks(self) -> None:
        """Free a queue's scheduler lock whose scheduler process died with its worker.

        RQ's lock lives a minute after its holder's last refresh: until then no other worker
        may start a scheduler, and retries with an interval and ``--in`` jobs wait. A
        holder on this machine whose process is gone, or one anywhere whose heartbeat is
        long overdue, no longer holds it.
        """
        from rq.scripts import release_lock
        from rq.utils import utcparse

        from rqjobs.worker_health import local_process_alive

        overdue_s = max(30.0, 3 * self.settings.worker_liveness_ttl_s)
        for queue_key in sorted(_text(k) or "" for k in self.redis.smembers("rq:queues")):
            lock_key = f"rq:scheduler-lock:{queue_key.removeprefix('rq:queue:')}"
            owner = _text(self.redis.get(lock_key))
            if not owner:
                continue
            info = {_text(k): _text(v) for k, v in self.redis.hgetall(f"rq:scheduler:{owner}").items()}
            pid = info.get("pid") or ""
            if info.get("hostname") == self.view.hostname and pid.isdigit() and int(pid) > 0:
                dead = not local_process_alive(int(pid))
            elif info.get("last_heartbeat") and self.view.trusted:
                age_s = self.view.redis_now_s - utcparse(info["last_heartbeat"] or "").timestamp()
                dead = age_s > overdue_s
            else:
                dead = False
            if dead and release_lock(self.redis, lock_key, owner):
                log.info("reconcile: released %s held by scheduler %s, which is gone", lock_key, owner)


# -- entry points ----------------------------------------------------------------------------


def _lock_token() -> str:
    """``host:pid#random``: whoever finds the lock taken can tell whether its holder lives."""
    from rqjobs.worker_health import process_label

    return f"{process_label()}#{uuid4().hex}"


def _holder_is_dead(token: str | None) -> bool:
    """A lock holder on this machine whose process is gone (killed mid-pass) holds nothing."""
    import socket

    from rqjobs.worker_health import local_process_alive

    if not token or "#" not in token:
        return False
    host, _, pid = token.split("#", 1)[0].rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not local_process_alive(int(pid))


def _acquire(redis: Redis, key: str, token: str, ttl_ms: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        if redis.set(key, token, nx=True, px=ttl_ms):
            return True
        holder = _text(redis.get(key))
        if _holder_is_dead(holder):
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
        if not _acquire(redis, LOCK_KEY, token, int(defaults.RECONCILE_LOCK_TTL_S * 1000), lock_wait_s):
            raise ReconcileBusy()
    try:
        return _Pass(runtime, dry_run=dry_run).run()
    finally:
        if lock and not dry_run:
            redis.eval(_RELEASE_LOCK, 1, LOCK_KEY, token)


def reconcile_if_due(runtime: Runtime, interval_s: float) -> ReconcileReport | None:
    """The worker's periodic pass: at most one per ``interval_s`` across all workers."""
    redis = runtime.redis
    token = _lock_token()
    if not redis.set(TURN_KEY, token, nx=True, px=max(1, int(interval_s * 1000))):
        return None
    if not _acquire(redis, LOCK_KEY, token, int(defaults.RECONCILE_LOCK_TTL_S * 1000), 0):
        return None
    try:
        return _Pass(runtime, dry_run=False).run()
    finally:
        redis.eval(_RELEASE_LOCK, 1, LOCK_KEY, token)


def release_run(
    runtime: Runtime, *, task_id: int | None, job_id: str, worker_label: str, worker_name: str, why: str
) -> Change | None:
    """Settle one run this worker process watched until its loop broke off (see worker_health).

    A row still ``running`` under ``worker_label`` is handled like a run whose worker died;
    a final row gets RQ's copy of the job released to match.
    """
    if task_id is None:
        return None
    record = runtime.store.get(task_id)
    if record is None:
        return None
    work = _Pass(runtime, dry_run=False)
    work.lost_what = "lost"
    work.lost_detail = "the worker {worker} lost Redis while this attempt ran: {why}"
    info = work.job_infos([job_id])[job_id]
    if record.status == _RUNNING and record.worker == worker_label:
        work.running_row(_Row.of(record), info, why, expect_worker_name=worker_name)
    elif record.status in WAITING and info.status == "started" and info.worker_name == worker_name:
        # the attempt ended and was recorded (a retry is due), but RQ could not re-queue it
        work.waiting_but_started(_Row.of(record), info, why)
    elif record.status in FINAL and info.status == "started" and info.worker_name == worker_name:
        release_job_in_redis(
            runtime,
            job_id,
            expect_worker_name=worker_name,
            consume_retry=False,
            reason=why,
            row_status=record.status,
        )
    return work.report.changes[0] if work.report.changes else None
