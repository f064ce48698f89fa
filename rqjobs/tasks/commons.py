"""What every task shares: the ``@background_task`` decorator and ``set_task_progress``.

The registry of task names is :mod:`rqjobs.tasks.registry` (its names are re-exported here).

The decorator is where the row learns what the task did (docs/ARCHITECTURE.md, "The row's life"): it marks
the row ``running`` when a worker starts the job, stores the result or appends the
traceback, and **re-raises** failures so RQ's retry and failure registries work. Called
outside an RQ job (tests, a shell), a task is a plain function call and touches nothing.

Importing this module is cheap (no rq, redis or sqlalchemy): the CLI imports every task
module to build ``rqjobs enqueue``'s subcommands.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar, overload

from rqjobs.exceptions import (
    InvalidInput,
    PermanentTaskError,
    ResultTooLarge,
    TaskDefinitionError,
    TaskNotFound,
    TaskResultError,
)
from rqjobs.hostpid import host_pid
from rqjobs.keys import foreign_job_key
from rqjobs.tasks.arguments import typed_arguments
from rqjobs.tasks.registry import (
    BUILTIN_TASKS_MODULE,
    ENTRY_POINT_GROUP,
    RESERVED_PARAMETERS,
    TaskSpec,
    check_parameters,
    get_task,
    load_task_modules,
    register,
    registered_tasks,
    spec_for_path,
)

if TYPE_CHECKING:
    from rq.job import Job

    from rqjobs.store.repository import TaskStore

__all__ = [
    "BUILTIN_TASKS_MODULE",
    "ENTRY_POINT_GROUP",
    "RESERVED_PARAMETERS",
    "PermanentTaskError",
    "TaskSpec",
    "background_task",
    "get_task",
    "load_task_modules",
    "registered_tasks",
    "set_task_progress",
    "spec_for_path",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def background_task(func: F) -> F: ...
@overload
def background_task(
    func: None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    validate: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
    max_running: int | None = None,
    unique: bool = False,
) -> Callable[[F], F]: ...


def background_task(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    validate: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
    max_running: int | None = None,
    unique: bool = False,
) -> Any:
    """Register a function as an rqjobs task and track its runs in the task row.

    The name defaults to the function's name with ``_`` as ``-``. ``validate`` is called
    with the bound arguments (a dict by parameter name, defaults applied) when the task is
    enqueued, before any row is written, and refuses bad input by raising
    :class:`rqjobs.InvalidTaskArguments`, :class:`ValueError` or :class:`TypeError`
    (the CLI exits 2 with the message; nothing is written). It may also return a dict of
    normalised arguments by parameter name: the row and the job then carry those, as
    keyword arguments, instead of what the caller passed. That is how a relative path
    is made absolute: it is checked against the enqueuing process's working directory,
    but the worker opens it in its own, which may be another. Returning None keeps the
    caller's arguments as they are. An ``InvalidTaskArguments`` (any
    ``rqjobs.InvalidInput``) raised by the task itself, in the worker, fails the row at
    once: an input error does not get better with retries.

    ``max_running=N`` lets at most N jobs of the task run at once, across every worker and
    host; the others wait ``queued`` (no attempt is counted) until a slot frees. A
    ``[limits]`` entry in rqjobs.toml for the task's name overrides it.

    ``unique=True``: while a row of this task with the same arguments is queued,
    scheduled, deferred or running, enqueueing it again creates nothing and returns that
    row (its ``existing`` is True). The key is the task name and a hash of the arguments
    (``rqjobs.checks.task_unique_key``); an explicit ``unique_key=`` wins over it.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        task_name = name or fn.__name__.replace("_", "-")
        _check_max_running(task_name, max_running)
        qualname = fn.__qualname__
        if "<locals>" in qualname or fn.__module__ == "__main__":
            raise TaskDefinitionError(
                f"task {task_name!r} must be defined at the top level of an importable module "
                f"(it is {fn.__module__}.{qualname}), so workers can import it"
            )
        signature = inspect.signature(fn)
        check_parameters(task_name, fn, signature)
        spec = TaskSpec(
            name=task_name,
            func=fn,
            path=f"{fn.__module__}.{qualname}",
            queue=queue,
            timeout_s=timeout_s,
            retries=retries,
            retry_interval_s=retry_interval_s,
            validate=validate,
            max_running=max_running,
            unique=unique,
            signature=signature,
        )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            job = _current_job()
            if job is None or _attempt is not None or job.func_name != spec.path:
                return fn(*args, **kwargs)
            return _run_tracked(spec, job, args, kwargs)

        object.__setattr__(spec, "wrapper", wrapper)
        wrapper.rqjobs_task = spec  # type: ignore[attr-defined]
        register(spec)
        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


def _check_max_running(task_name: str, max_running: object) -> None:
    """A limit must be a positive whole number: 0 would mean "never runs", a typo."""
    if max_running is None:
        return
    if isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 1:
        raise TaskDefinitionError(
            f"task {task_name!r}: max_running must be a whole number of at least 1, got {max_running!r}"
        )


# -- running inside a worker ------------------------------------------------------------


@dataclass
class _Attempt:
    """What the running job's tracking needs; exactly one per work horse at a time."""

    task_id: int
    job: Job
    store: TaskStore
    interval_s: float
    last_write: float = float("-inf")  # the first report is written at once
    pending: tuple[int, str | None] | None = None
    timer: threading.Timer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    timeout_fired: bool = False
    #: the latest report, written or held back: what the row and job.meta say at the end
    last_reported: tuple[int, str | None] | None = None
    closed: bool = False

    @property
    def pending_message(self) -> str | None:
        return self.pending[1] if self.pending else None

    def stop(self) -> None:
        """No report is written after this returns: the task's end writes the last one.

        A flush under way holds the lock until its write is done, so this waits for it;
        one that gets the lock later sees ``closed`` and writes nothing.
        """
        with self.lock:
            self.closed = True
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None


_attempt: _Attempt | None = None


def _current_job() -> Job | None:
    # rq is imported only inside workers; outside one there can be no current job
    rq_job = sys.modules.get("rq.job")
    return rq_job.get_current_job() if rq_job is not None else None


def worker_label() -> str:
    """host:pid of the worker that runs the job (the horse's parent)."""
    return host_pid(os.getppid() if os.environ.get("RQ_JOB_ID") else None)


def plan_retry(job: Job) -> tuple[bool, datetime | None]:
    """Will RQ retry ``job`` after the failure being handled now, and when (None: at once)?

    Read before RQ's own failure handling, which decrements ``retries_left``. The time is
    left on the job for :meth:`RqjobsJob.retry`, so the row's ``scheduled_for`` and the
    scheduled job registry name the same whole second.
    """
    if not job.should_retry:
        return False, None
    interval = job.get_retry_interval()
    if not interval:
        return True, None
    from rqjobs.timeparse import ceil_to_second

    retry_at = ceil_to_second(datetime.now(timezone.utc) + timedelta(seconds=interval))
    job.rqjobs_retry_at = retry_at  # type: ignore[attr-defined]
    return True, retry_at


def note_timeout_fired() -> None:
    """Called by the worker's death penalty when the job's timeout fires.

    A task that catches ``Exception`` swallows RQ's JobTimeoutException; this flag lets
    the decorator fail the row (and raise) after such a task returns.
    """
    if _attempt is not None:
        _attempt.timeout_fired = True


def _task_id_for(
    spec: TaskSpec, job: Job, args: Sequence[Any], kwargs: Mapping[str, Any], store: TaskStore
) -> int:
    """The row id for the job: its id, or a row made now for a job enqueued without rqjobs."""
    try:
        return int(job.id)
    except ValueError:
        pass
    known = job.meta.get("rqjobs_task_id")
    if known is not None:
        return int(known)
    from rqjobs.store.models import utcnow

    record = store.insert(
        name=spec.name,
        description=(job.description or f"{spec.name} (enqueued outside rqjobs as job {job.id})")[:1000],
        queue=job.origin or "default",
        args=_jsonable(list(args)),
        kwargs=_jsonable(dict(kwargs)),
        timeout_s=int(job.timeout or 0),
        max_retries=int(job.retries_left or 0),
        started_at=utcnow(),
    )
    job.meta["rqjobs_task_id"] = record.id
    job.save_meta()
    job.connection.set(foreign_job_key(record.id), job.id)  # how reconcile finds this row's job
    return record.id


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _normalise_result(value: Any) -> dict[str, Any]:
    result = value if isinstance(value, dict) else {"result": value}
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise TaskResultError(
            f"the task returned a value that is not JSON-serialisable ({type(value).__name__}): {exc}"
        ) from None
    return result


def _run_tracked(spec: TaskSpec, job: Job, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    global _attempt
    from rq.timeouts import JobTimeoutException

    from rqjobs.runtime import get_runtime
    from rqjobs.store.repository import attempt_log_entry

    runtime = get_runtime()
    store = runtime.store
    task_id = _task_id_for(spec, job, args, kwargs, store)
    worker = worker_label()
    if not store.mark_running(task_id, worker):
        record = store.get(task_id)
        if record is None:
            raise TaskNotFound(f"no task row {task_id} in the task database for job {job.id}")
        # finished or canceled: the row's verdict stands, the task does not run again
        return record.result
    _attempt = _Attempt(task_id, job, store, runtime.settings.progress_interval_s)
    try:
        call_args, call_kwargs = typed_arguments(spec.func, args, kwargs)
        value = spec.func(*call_args, **call_kwargs)
        if _attempt.timeout_fired:
            raise JobTimeoutException(
                f"Task exceeded maximum timeout value ({job.timeout} seconds); "
                "the task caught the timeout and returned anyway"
            )
        result = _normalise_result(value)
        _check_result_size(result, runtime.settings.max_result_bytes)
        _attempt.stop()
        pending_message = _attempt.pending_message
        reported = _attempt.last_reported
        _attempt = None
        store.mark_finished(task_id, result, progress_message=pending_message)
        if reported is not None:
            # RQ's copy must end where the row does: 100, with the last message (the one
            # held back by the throttle reached neither job.meta nor the row before)
            _save_meta(job, 100, pending_message if pending_message is not None else reported[1])
        job.rqjobs_row_recorded = True  # type: ignore[attr-defined]
        return result
    except BaseException as exc:
        # BaseException too: a task calling sys.exit() (a wrapped tool's main()) must not
        # leave the row running; RQ's bare except files such a job as failed
        timed_out = isinstance(exc, JobTimeoutException) or bool(_attempt and _attempt.timeout_fired)
        # an input error (a bad argument, a template the worker cannot find) fails the same
        # way on every attempt: retrying it would only delay the verdict
        input_error = isinstance(exc, InvalidInput)
        permanent = isinstance(exc, (PermanentTaskError, InvalidInput)) and not timed_out
        if permanent:
            job.retries_left = 0  # RQ's handle_job_failure then fails the job without retrying
        will_retry, retry_at = plan_retry(job)
        record = store.get(task_id)
        if timed_out:
            what = f"timed out after {job.timeout} s"
        elif isinstance(exc, ResultTooLarge):
            what = f"{exc} (not retried)"
        elif permanent:
            kind = "an input error" if input_error else "PermanentTaskError"
            what = f"failed permanently ({kind}: not retried)"
        else:
            what = "failed"
        entry = attempt_log_entry(
            record.attempts if record else 0, what, traceback.format_exc(), where=worker
        )
        reported = _attempt.last_reported if _attempt is not None else None
        if _attempt is not None:
            _attempt.stop()
        if reported is None:
            store.mark_attempt_failed(task_id, entry, will_retry=will_retry, retry_at=retry_at)
        else:
            # the row and job.meta keep the last value reported (0 while a retry waits)
            percent = 0 if will_retry else reported[0]
            store.mark_attempt_failed(
                task_id,
                entry,
                will_retry=will_retry,
                retry_at=retry_at,
                progress=percent,
                progress_message=reported[1],
            )
            _save_meta(job, percent, reported[1])
        job.rqjobs_row_recorded = True  # type: ignore[attr-defined]
        raise
    finally:
        if _attempt is not None:
            _attempt.stop()
        _attempt = None


def set_task_progress(percent: int | float, message: str | None = None) -> None:
    """Report how far the running task is (0-100), with an optional message.

    Written to ``job.meta["progress"]`` (rq-dashboard shows it) and to the row, at most
    once per ``progress_interval_s``, so a tight loop of calls costs little; the last
    message held back is written with the result. Outside a job it does nothing.
    Progress is advisory: a Redis or database hiccup here never fails the task.
    """
    attempt = _attempt
    if attempt is None:
        return
    percent = max(0, min(100, int(percent)))
    with attempt.lock:
        wait_s = attempt.last_write + attempt.interval_s - time.monotonic()
        if wait_s > 0:
            # held back; written by a timer when the interval is up, so a task that then
            # works quietly for a long while still shows where it is
            attempt.pending = attempt.last_reported = (percent, message)
            if attempt.timer is None:
                attempt.timer = threading.Timer(wait_s, _flush_progress, args=(attempt,))
                attempt.timer.daemon = True
                attempt.timer.start()
            return
        attempt.last_reported = (percent, message)
        attempt.last_write = time.monotonic()
        attempt.pending = None
    _write_progress(attempt, percent, message)


def _flush_progress(attempt: _Attempt) -> None:
    with attempt.lock:
        attempt.timer = None
        if attempt.closed or attempt.pending is None or _attempt is not attempt:
            return  # the task ended: its end writes the report held back
        pending, attempt.pending = attempt.pending, None
        attempt.last_write = time.monotonic()
        # under the lock: the task's end (stop()) waits for this write, so a late one
        # cannot overwrite the final progress in job.meta
        _write_progress(attempt, *pending)


def _save_meta(job: Job, percent: int, message: str | None) -> None:
    """Best effort, like every progress write: Redis trouble here never fails the task."""
    job.meta["progress"] = percent
    job.meta["progress_message"] = message
    try:
        job.save_meta()
    except Exception as exc:  # redis-py errors, and anything the connection raises
        logging.getLogger("rqjobs.progress").warning("progress of job %s not saved in Redis: %s", job.id, exc)


def _check_result_size(result: dict[str, Any], limit: int) -> None:
    """Refuse a result larger than ``max_result_bytes`` before the database sees it.

    The same limit on every database: SQLite would store 20 MB, MariaDB would drop the
    connection (max_allowed_packet) and the task would look like a database outage.
    """
    if limit <= 0:
        return
    size = len(json.dumps(result).encode("utf-8"))
    if size > limit:
        raise ResultTooLarge(f"result too large ({size} bytes > {limit})")


def _write_progress(attempt: _Attempt, percent: int, message: str | None) -> None:
    job = attempt.job
    job.meta["progress"] = percent
    job.meta["progress_message"] = message
    try:
        job.save_meta()
    except Exception as exc:  # redis-py errors, and anything the connection raises
        logging.getLogger("rqjobs.progress").warning("progress of job %s not saved in Redis: %s", job.id, exc)
    attempt.store.set_progress(attempt.task_id, percent, message)
