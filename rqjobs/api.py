"""The Python API: enqueue tasks and read their rows.

``enqueue_task`` is the okpy seed made safe: validate everything first (a refusal
writes nothing), commit the row, *then* put the job in Redis under ``str(row.id)``.
If Redis fails, the row is marked failed with the reason before the error reaches the
caller, so no row is ever left ``queued`` for a job that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rqjobs.exceptions import EnqueueFailed, InvalidSchedule, InvalidTaskArguments, TaskDefinitionError
from rqjobs.tasks.commons import TaskSpec, get_task

if TYPE_CHECKING:
    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime
    from rqjobs.store.repository import TaskRecord


def _resolve_options(
    spec: TaskSpec,
    settings: Settings,
    queue: str | None,
    timeout_s: int | None,
    retries: int | None,
    retry_interval_s: int | list[int] | None,
) -> tuple[str, int, int, list[int] | None]:
    queue = queue or spec.queue or settings.default_queue
    timeout = timeout_s if timeout_s is not None else spec.timeout_s
    timeout = timeout if timeout is not None else settings.default_timeout_s
    max_retries = retries if retries is not None else spec.retries
    max_retries = max_retries if max_retries is not None else settings.default_retries
    interval = retry_interval_s if retry_interval_s is not None else spec.retry_interval_s
    if interval is None:
        interval = settings.default_retry_interval_s
    intervals = [interval] if isinstance(interval, int) else list(interval)
    if not queue or not queue.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidTaskArguments(f"invalid queue name {queue!r}")
    if timeout <= 0:
        raise InvalidTaskArguments(f"timeout must be a positive number of seconds, got {timeout}")
    if max_retries < 0:
        raise InvalidTaskArguments(f"retries must not be negative, got {max_retries}")
    if any((not isinstance(i, int)) or i < 0 for i in intervals) or not intervals:
        raise InvalidTaskArguments(f"retry intervals must be seconds >= 0, got {interval!r}")
    return queue, timeout, max_retries, (intervals if any(intervals) else None)


def resolve_schedule(at: datetime | None, delay_s: float | None) -> datetime | None:
    """When a scheduled task should run, in UTC; a naive ``at`` is local time.

    Rounded up to a whole second: RQ schedules in whole seconds, and the row must not
    promise a time before the job can run.
    """
    from rqjobs.timeparse import ceil_to_second

    if at is not None and delay_s is not None:
        raise InvalidSchedule("give either a time (at) or a delay, not both")
    now = datetime.now(timezone.utc)
    if delay_s is not None:
        if not delay_s > 0:  # also refuses NaN
            raise InvalidSchedule(f"the delay must be positive, got {delay_s} s")
        try:
            return ceil_to_second(now + timedelta(seconds=delay_s))
        except OverflowError:
            raise InvalidSchedule(f"the delay is too long: {delay_s} s") from None
    if at is None:
        return None
    if not isinstance(at, datetime):
        raise InvalidSchedule(f"the time must be a datetime, got {type(at).__name__}")
    try:
        when = at.astimezone(timezone.utc)  # a naive datetime is taken as local time
        if when <= now:
            raise InvalidSchedule(f"{at.isoformat()} is in the past")
        return ceil_to_second(when)
    except OverflowError:
        raise InvalidSchedule(f"{at.isoformat()} is out of range") from None


def _check_json(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        json.dumps([args, kwargs])
    except (TypeError, ValueError) as exc:
        raise InvalidTaskArguments(f"{spec.name}: arguments must be JSON-serialisable: {exc}") from None


def _as_keyword_arguments(spec: TaskSpec, arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments by parameter name -> keyword arguments (a ``**extra`` dict is spread out)."""
    out: dict[str, Any] = {}
    for name, value in arguments.items():
        param = spec.signature.parameters.get(name)
        if param is not None and param.kind is param.VAR_KEYWORD and isinstance(value, dict):
            out.update(value)
        else:
            out[name] = value
    return out


def enqueue_task(
    task: str | Callable[..., Any],
    *args: Any,
    description: str,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    at: datetime | None = None,
    delay_s: float | None = None,
    runtime: Runtime | None = None,
    **kwargs: Any,
) -> TaskRecord:
    """Record a task and enqueue its job; returns a snapshot of the new row.

    Raises :class:`ValueError` (an :class:`~rqjobs.exceptions.InvalidInput`) for a bad
    request, with nothing written, and :class:`~rqjobs.exceptions.EnqueueFailed` when
    Redis failed, after marking the row failed.
    """
    from rqjobs.runtime import get_runtime

    if not isinstance(description, str) or not description.strip():
        raise InvalidTaskArguments("a task needs a non-empty description")
    runtime = runtime or get_runtime()
    settings = runtime.settings
    spec = get_task(task)
    bound = spec.bind(args, kwargs)
    _check_json(spec, args, kwargs)
    if spec.validate is not None:
        normalised = spec.validate(bound)
        if normalised is not None:
            if not isinstance(normalised, dict):
                raise TaskDefinitionError(
                    f"task {spec.name!r}: its validate function returned {type(normalised).__name__}; "
                    "it must return None or a dict of arguments by parameter name"
                )
            # e.g. relative paths made absolute: the worker's cwd is not the caller's
            args, kwargs = (), _as_keyword_arguments(spec, normalised)
            spec.bind(args, kwargs)
            _check_json(spec, args, kwargs)
    queue_name, timeout, max_retries, intervals = _resolve_options(
        spec, settings, queue, timeout_s, retries, retry_interval_s
    )
    scheduled_for = resolve_schedule(at, delay_s)

    record = runtime.store.insert(
        name=spec.name,
        description=description.strip(),
        queue=queue_name,
        args=args,
        kwargs=kwargs,
        timeout_s=timeout,
        max_retries=max_retries,
        retry_intervals=intervals,
        scheduled_for=scheduled_for,
    )
    submit_job(runtime, record)
    return record


def submit_job(runtime: Runtime, record: TaskRecord) -> None:
    """Put the row's job in Redis (``job_id = str(row.id)``); on failure, fail the row."""
    from redis.exceptions import RedisError
    from rq.job import Retry

    from rqjobs.broker.connection import describe
    from rqjobs.exceptions import RqjobsError
    from rqjobs.store.repository import attempt_log_entry

    spec = get_task(record.name)
    try:
        queue = runtime.queue(record.queue)
        job = queue.create_job(
            spec.path,
            args=record.args,
            kwargs=record.kwargs,
            timeout=record.timeout_s,
            result_ttl=runtime.settings.result_ttl_s,
            failure_ttl=runtime.settings.failure_ttl_s,
            description=record.description,
            job_id=record.job_id,
            retry=Retry(max=record.max_retries, interval=record.retry_intervals or 0)
            if record.max_retries
            else None,
        )
        if record.scheduled_for is not None:
            queue.schedule_job(job, record.scheduled_for)
        else:
            queue.enqueue_job(job)
    except BaseException as exc:
        # whatever went wrong, the committed row must not stay queued for a job that does not exist
        reason = f"{type(exc).__name__}: {exc}"
        where = describe(runtime.settings)
        if _job_landed(runtime, record.job_id):
            # a timed-out write may still have reached Redis: then the job exists and runs
            return
        entry = attempt_log_entry(
            record.attempts, "was not enqueued", f"could not put the job in Redis ({where}): {reason}"
        )
        runtime.store.mark_enqueue_failed(record.id, entry)
        if isinstance(exc, (RedisError, OSError, RqjobsError)):
            raise EnqueueFailed(f"task {record.id} failed: Redis is unreachable ({where}): {reason}") from exc
        raise


def _job_landed(runtime: Runtime, job_id: str) -> bool:
    from rqjobs.broker.connection import connect

    try:
        probe = connect(runtime.settings, start_embedded=False)
        return bool(probe.exists(f"rq:job:{job_id}"))
    except Exception:
        return False


def get_task_record(task_id: int, runtime: Runtime | None = None) -> TaskRecord | None:
    """The row with this id, or None."""
    from rqjobs.runtime import get_runtime

    return (runtime or get_runtime()).store.get(task_id)
