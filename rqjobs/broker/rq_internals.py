"""The one module that reaches into RQ's internals. Verified against RQ 2.12 (pyproject: rq>=2.12,<3).

Reconcile must change a job's state in Redis atomically with everything RQ keeps about
it (its hash, the started registry, its executions, the queue list), inside one WATCH /
MULTI transaction, and RQ's public API cannot do that: it offers no "release a started
job" and writes registries outside the caller's transaction. So this module uses what
RQ 2.x keeps private:

* ``Job._handle_failure(reason, pipeline, worker_name=...)``: files a job as failed
  (failed registry, result) inside our pipeline;
* ``Queue._enqueue_job(job, pipeline=...)``: pushes a job without a new id or status write
  (also how :func:`enqueue_batch` pushes a batch, as RQ's own ``Queue.enqueue_many`` does);
* RQ's key layout (``rq:job:<id>``, ``rq:execution:<job id>:<execution id>``,
  ``rq:executions:<id>``, ``rq:queues``, ``rq:scheduler-lock:<queue>``,
  ``rq:scheduler:<name>``; spelled in :mod:`rqjobs.keys`) and the hash fields
  ``status``, ``worker_name``, ``origin``, ``started_at``;
* ``rq.scripts.release_lock`` for a scheduler lock;
* a worker's hash ``rq:worker:<name>`` and its fields ``state`` (``busy`` while it runs a job),
  ``queues``,
  ``current_job``, ``birth``, ``last_heartbeat``, ``successful_job_count`` and
  ``failed_job_count`` (the web dashboard's workers page).

``tests/test_rq_internals.py`` checks every one of these on the installed RQ, and that
pyproject's RQ range is still the one named above: widen it only after checking them.
Nothing else in rqjobs spells an ``rq:`` key or calls a private RQ method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rqjobs.keys import (
    RQ_QUEUE_PREFIX,
    RQ_QUEUES_KEY,
    rq_execution_key,
    rq_executions_key,
    rq_job_key,
    rq_scheduler_key,
    rq_scheduler_lock_key,
    rq_worker_key,
)
from rqjobs.status import FINAL, TaskStatus

if TYPE_CHECKING:
    from redis import Redis
    from rq.queue import Queue

#: the RQ versions this module was checked against (tests/test_rq_internals.py compares pyproject's)
VERIFIED_RQ_RANGE = ">=2.12,<3"
#: RQ's job statuses after which it will not run the job again by itself
RQ_FINAL = ("finished", "failed", "stopped", "canceled")

QueueFor = Callable[[str], "Queue"]


def text(value: Any) -> str | None:
    """A Redis reply as ``str`` (clients may or may not decode)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_rq_time(raw: Any) -> datetime | None:
    """A timestamp as RQ writes it into a job hash (UTC)."""
    from rq.utils import utcparse

    value = text(raw)
    if not value:
        return None
    try:
        return utcparse(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class JobInfo:
    """What reconcile reads of a job's hash: enough to decide, no deserialising."""

    job_id: str
    status: str | None
    worker_name: str | None
    origin: str | None

    @property
    def exists(self) -> bool:
        return self.status is not None


def pipelined(redis: Redis, items: list[Any], command: Callable[[Any, Any], Any]) -> list[tuple[Any, Any]]:
    """``command(pipe, item)`` for every item, 1000 to a round trip; (item, reply) pairs."""
    out: list[tuple[Any, Any]] = []
    for start in range(0, len(items), 1000):
        chunk = items[start : start + 1000]
        pipe = redis.pipeline(transaction=False)
        for item in chunk:
            command(pipe, item)
        out.extend(zip(chunk, pipe.execute(), strict=True))
    return out


def job_infos(redis: Redis, job_ids: list[str]) -> dict[str, JobInfo]:
    replies = pipelined(
        redis, job_ids, lambda pipe, job_id: pipe.hmget(rq_job_key(job_id), "status", "worker_name", "origin")
    )
    return {
        job_id: JobInfo(job_id, text(status), text(worker_name), text(origin))
        for job_id, (status, worker_name, origin) in replies
    }


#: the fields of RQ's worker hash that :func:`worker_hashes` returns
WORKER_FIELDS = (
    "state",
    "queues",
    "current_job",
    "birth",
    "last_heartbeat",
    "successful_job_count",
    "failed_job_count",
)


def worker_hashes(redis: Redis, worker_names: list[str]) -> dict[str, dict[str, str | None]]:
    """What RQ's hash says of each named worker, in one round trip ({} for a worker with none)."""
    replies = pipelined(
        redis, worker_names, lambda pipe, name: pipe.hmget(rq_worker_key(name), *WORKER_FIELDS)
    )
    return {
        name: (dict(zip(WORKER_FIELDS, map(text, reply), strict=True)) if any(reply) else {})
        for name, reply in replies
    }


def enqueue_batch(pipe: Any, queue: Queue, jobs: list[Any]) -> None:
    """Queue jobs without dependencies in ``pipe``, exactly as RQ's ``Queue.enqueue_many`` does.

    The queue is registered once and each job goes through ``Queue._enqueue_job``: the
    public ``enqueue_job`` would also look up dependencies and register the queue again
    for every job, a third more commands for a 10,000-job batch.
    """
    pipe.sadd(queue.redis_queues_keys, queue.key)
    for job in jobs:
        queue._enqueue_job(job, pipeline=pipe)


def job_exists(redis: Redis, job_id: str) -> bool:
    return bool(redis.exists(rq_job_key(job_id)))


def job_started_at(redis: Redis, job_id: str) -> datetime | None:
    """When RQ says the job's current run started."""
    return parse_rq_time(redis.hget(rq_job_key(job_id), "started_at"))


def started_entries(redis: Redis, queue: Queue, job_id: str) -> list[tuple[str, str | None]]:
    """The job's entries in its queue's started registry, with the worker named by each execution."""
    out = []
    for member in redis.zrange(queue.started_job_registry.key, 0, -1):
        entry = text(member) or ""
        if entry.rsplit(":", 1)[0] == job_id:
            out.append((entry, text(redis.hget(rq_execution_key(entry), "worker_name"))))
    return out


def queue_names(redis: Redis) -> list[str]:
    """Every queue RQ knows of (its ``rq:queues`` set), sorted."""
    return sorted((text(k) or "").removeprefix(RQ_QUEUE_PREFIX) for k in redis.smembers(RQ_QUEUES_KEY))


def started_job_ids(redis: Redis, queue: Queue) -> set[str]:
    """The ids of the jobs in a queue's started registry."""
    return {(text(m) or "").rsplit(":", 1)[0] for m in redis.zrange(queue.started_job_registry.key, 0, -1)}


def job_status_and_worker(redis: Redis, job_id: str) -> tuple[str | None, str | None]:
    status, worker_name = (text(v) for v in redis.hmget(rq_job_key(job_id), "status", "worker_name"))
    return status, worker_name


def run_left_by_live_worker(redis: Redis, job_id: str, worker_name: str) -> bool:
    """Is ``job_id`` still ``started`` by ``worker_name`` while that worker's hash says it runs
    no such job (idle, or busy with another)? Then its work horse ended without a verdict.

    One MULTI reads both hashes, so the answer is one moment's: the horse writes ``started``
    together with the worker's ``current_job``, and the worker goes idle only after it has
    handled the horse's end. A worker with no hash (gone) is not this question: False.
    """
    pipe = redis.pipeline(transaction=True)
    pipe.hmget(rq_job_key(job_id), "status", "worker_name")
    pipe.hmget(rq_worker_key(worker_name), "state", "current_job")
    (status, started_by), (state, current) = ([text(v) for v in reply] for reply in pipe.execute())
    if status != "started" or started_by != worker_name or state is None:
        return False
    return state != "busy" or current != job_id


def drop_started_entry(redis: Redis, queue: Queue, member: str) -> bool:
    """Remove one started-registry entry and its execution hash (of a run that is over)."""
    pipe = redis.pipeline()
    pipe.zrem(queue.started_job_registry.key, member)
    pipe.delete(rq_execution_key(member))
    removed, _ = pipe.execute()
    return bool(removed)


def in_scheduled_registry(redis: Redis, queue: Queue, job_id: str) -> bool:
    return redis.zscore(queue.scheduled_job_registry.key, job_id) is not None


def verdict(redis: Redis, job_id: str) -> tuple[Any, str | None]:
    """``(return value, failure text)`` of the job's latest result (None where there is none)."""
    from rq.results import Result
    from rq.serializers import JSONSerializer

    from rqjobs.broker.job import RqjobsJob

    job = RqjobsJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
    result = job.latest_result()
    if result is None:
        return None, None
    value = result.return_value if result.type == Result.Type.SUCCESSFUL else None
    return value, result.exc_string or None


def release_job_in_redis(
    redis: Redis,
    queue_for: QueueFor,
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

    job_key = rq_job_key(job_id)
    for _attempt in range(5):
        with redis.pipeline() as pipe:
            try:
                pipe.watch(job_key)
                status, worker_name, origin = (
                    text(v) for v in pipe.hmget(job_key, "status", "worker_name", "origin")
                )
                if status != JobStatus.STARTED.value:
                    return None
                if expect_worker_name is not None and worker_name != expect_worker_name:
                    return None
                job = RqjobsJob.fetch(job_id, connection=redis, serializer=JSONSerializer)
                queue = queue_for(origin or job.origin)
                queue.get_redis_server_version()  # cached: nothing but the writes below goes in MULTI
                started_key = queue.started_job_registry.key
                members = [
                    m
                    for m in (text(x) for x in pipe.zrange(started_key, 0, -1))
                    if m and m.rsplit(":", 1)[0] == job_id
                ]
                pipe.multi()
                for member in members:
                    pipe.zrem(started_key, member)
                    pipe.delete(rq_execution_key(member))
                pipe.delete(rq_executions_key(job_id))
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
                        when = datetime.now(timezone.utc) + timedelta(seconds=interval)
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


def repush_in_redis(
    redis: Redis, queue_for: QueueFor, job_id: str, expect_status: str, stale: list[str]
) -> bool:
    """Put a job that sits in no queue back at the end of its queue (atomically).

    ``stale`` are its started-registry entries left by workers that died before the task
    started; they go too. No new entry can appear meanwhile: no worker can take a job that
    is in no queue.
    """
    from redis.exceptions import WatchError
    from rq.job import JobStatus

    job_key = rq_job_key(job_id)
    for _attempt in range(5):
        with redis.pipeline() as pipe:
            try:
                pipe.watch(job_key)
                status, origin = (text(v) for v in pipe.hmget(job_key, "status", "origin"))
                if status != expect_status or not origin:
                    return False
                queue = queue_for(origin)
                if job_id in {text(x) for x in pipe.lrange(queue.key, 0, -1)}:
                    return False
                if pipe.zscore(queue.scheduled_job_registry.key, job_id) is not None:
                    return False
                pipe.multi()
                for member in stale:
                    pipe.zrem(queue.started_job_registry.key, member)
                    pipe.delete(rq_execution_key(member))
                pipe.lrem(queue.intermediate_queue_key, 0, job_id)
                pipe.hset(job_key, "status", JobStatus.QUEUED.value)
                pipe.rpush(queue.key, job_id)
                pipe.execute()
                return True
            except WatchError:
                continue
    return False


def give_back_dequeued(redis: Redis, queue: Queue, job_id: str, *, at_front: bool) -> bool:
    """Return a job a worker dequeued but will not start (its queue was paused, or its
    task's concurrency limit is full) to its queue, atomically.

    RQ's dequeue moves the id into the queue's intermediate list (one queue: LMOVE) or pops
    it (several: BLPOP); either way the job is in no queue now. It goes back at the front
    (a pause: order kept) or the end (a full limit: the others get their turn) and leaves
    the intermediate list, so RQ's cleanup never takes it for a job lost mid-start. A job
    no longer ``queued`` (canceled meanwhile) is not pushed back. False when not pushed.
    """
    from redis.exceptions import WatchError
    from rq.job import JobStatus

    job_key = rq_job_key(job_id)
    for _attempt in range(5):
        with redis.pipeline() as pipe:
            try:
                pipe.watch(job_key)
                status = text(pipe.hget(job_key, "status"))
                pipe.multi()
                pipe.lrem(queue.intermediate_queue_key, 0, job_id)
                if status == JobStatus.QUEUED.value:
                    (pipe.lpush if at_front else pipe.rpush)(queue.key, job_id)
                pipe.execute()
                return status == JobStatus.QUEUED.value
            except WatchError:
                continue
    return False


def scheduler_locks(redis: Redis) -> Iterator[tuple[str, str, dict[str | None, str | None]]]:
    """``(lock key, owner, the owner's scheduler hash)`` of every queue's scheduler lock that is held."""
    for name in queue_names(redis):
        lock_key = rq_scheduler_lock_key(name)
        owner = text(redis.get(lock_key))
        if owner:
            info = {text(k): text(v) for k, v in redis.hgetall(rq_scheduler_key(owner)).items()}
            yield lock_key, owner, info


def release_scheduler_lock(redis: Redis, lock_key: str, owner: str) -> bool:
    """Free ``lock_key`` if ``owner`` still holds it (RQ's own release script)."""
    from rq.scripts import release_lock

    return bool(release_lock(redis, lock_key, owner))


def heartbeat_age_s(info: dict[str | None, str | None], now_s: float) -> float | None:
    """Seconds since a scheduler's last heartbeat (None when it never wrote one)."""
    from rq.utils import utcparse

    beat = info.get("last_heartbeat")
    return now_s - utcparse(beat).timestamp() if beat else None
