"""Checking an enqueue request before anything is written: arguments, options, schedule.

:func:`check_task` is the whole of ``enqueue_task``'s validation, and what
``rqjobs enqueue ... --dry-run`` runs: it returns a :class:`TaskPlan` (what the row would
hold) or raises an :class:`~rqjobs.exceptions.InvalidInput`, and touches neither the
database nor Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rqjobs import defaults
from rqjobs.exceptions import InvalidInput, InvalidSchedule, InvalidTaskArguments, TaskDefinitionError
from rqjobs.tasks.argument_checks import check_json, check_text, check_types
from rqjobs.tasks.registry import TaskSpec
from rqjobs.tasks.registry import get_task as task_spec

if TYPE_CHECKING:
    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime


#: a year: anything longer is a typo, and larger values overflow the integer columns
MAX_SECONDS = 366 * 86_400
MAX_RETRIES = 1000


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
    plain_queue = (queue or "").replace("-", "").replace("_", "").replace(".", "")
    if not plain_queue.isascii() or not plain_queue.isalnum():
        raise InvalidTaskArguments(f"invalid queue name {(queue or '')[:80]!r}")
    if len(queue) > defaults.QUEUE_MAX_CHARS:
        raise InvalidTaskArguments(
            f"the queue name is {len(queue)} characters long; the limit is {defaults.QUEUE_MAX_CHARS}"
        )
    if not 0 < timeout <= MAX_SECONDS:
        raise InvalidTaskArguments(f"timeout must be between 1 and {MAX_SECONDS} seconds, got {timeout}")
    if not 0 <= max_retries <= MAX_RETRIES:
        raise InvalidTaskArguments(f"retries must be between 0 and {MAX_RETRIES}, got {max_retries}")
    if not intervals or any((not isinstance(i, int)) or not 0 <= i <= MAX_SECONDS for i in intervals):
        raise InvalidTaskArguments(
            f"retry intervals must be seconds between 0 and {MAX_SECONDS}, got {interval!r}"
        )
    return queue, timeout, max_retries, (intervals if any(intervals) else None)


def resolve_schedule(at: datetime | None, delay_s: float | None) -> datetime | None:
    """When a scheduled task should run, in UTC; a naive ``at`` is local time.

    Rounded up to a whole second: RQ schedules in whole seconds, and the row must not
    promise a time before the job can run.
    """
    from rqjobs.timeparse import ceil_to_second

    if at is None and delay_s is None:
        return None
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


@dataclass(frozen=True)
class TaskPlan:
    """What :func:`enqueue_task` would write: the request checked, every default resolved."""

    name: str
    description: str
    queue: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout_s: int
    max_retries: int
    retry_intervals: list[int] | None
    scheduled_for: datetime | None
    #: the unique key (``unique_key=`` or a ``unique=True`` task's own); None: not unique
    unique_key: str | None = None

    def row_options(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`TaskStore.insert` / :func:`row_values`."""
        return {
            "name": self.name,
            "description": self.description,
            "queue": self.queue,
            "args": self.args,
            "kwargs": self.kwargs,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "retry_intervals": self.retry_intervals,
            "scheduled_for": self.scheduled_for,
            "unique_key": self.unique_key,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``rqjobs enqueue ... --dry-run --json``)."""
        out = dict(self.__dict__)
        out["args"] = list(self.args)
        out["scheduled_for"] = self.scheduled_for.isoformat() if self.scheduled_for else None
        return out


def _plain(value: Any) -> Any:
    """An Enum, a path or a datetime as the JSON value the job carries (the worker converts back)."""
    if value is None or type(value) in (str, int, float, bool):  # the common case, checked first
        return value
    from datetime import date
    from enum import Enum
    from pathlib import PurePath

    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_task(
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
    task_kwargs: Mapping[str, Any] | None = None,
    unique_key: str | None = None,
    **kwargs: Any,
) -> TaskPlan:
    """Check a request as :func:`enqueue_task` does and say what it would write; writes nothing.

    Raises the same :class:`~rqjobs.exceptions.InvalidInput` errors. The task's
    ``validate`` runs: a ValueError or TypeError from it is an InvalidTaskArguments.
    ``unique_key`` is checked here; a ``unique=True`` task without one gets its own
    (:func:`task_unique_key`).
    """
    from rqjobs.runtime import ready_runtime

    return check_request(
        ready_runtime(runtime).settings,
        task,
        args,
        kwargs,
        description=description,
        queue=queue,
        timeout_s=timeout_s,
        retries=retries,
        retry_interval_s=retry_interval_s,
        at=at,
        delay_s=delay_s,
        task_kwargs=task_kwargs,
        unique_key=unique_key,
    )


def check_request(
    settings: Settings,
    task: str | Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    description: str,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    at: datetime | None = None,
    delay_s: float | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    unique_key: str | None = None,
) -> TaskPlan:
    """:func:`check_task` against given settings, the task modules already imported
    (``enqueue_many`` checks each item with it)."""
    from dataclasses import replace

    if unique_key is not None:
        check_unique_key(unique_key)
    if not isinstance(description, str) or not description.strip():
        raise InvalidTaskArguments("a task needs a non-empty description")
    spec = task_spec(task)
    clash = set(kwargs) & set(task_kwargs or {})
    if clash:
        raise InvalidTaskArguments(f"{spec.name}: {', '.join(sorted(clash))} given twice")
    plan = plan_task(
        settings,
        task,
        args,
        {**kwargs, **(task_kwargs or {})},
        description=description,
        queue=queue,
        timeout_s=timeout_s,
        retries=retries,
        retry_interval_s=retry_interval_s,
        at=at,
        delay_s=delay_s,
    )
    if unique_key is None and spec.unique:
        unique_key = task_unique_key(spec, plan.args, plan.kwargs)
    return replace(plan, unique_key=unique_key) if unique_key is not None else plan


def check_unique_key(key: Any) -> None:
    """A unique key: a non-empty string that fits the column (``UNIQUE_KEY_MAX_CHARS``)."""
    if not isinstance(key, str):
        raise InvalidTaskArguments(f"the unique key must be a string, got {type(key).__name__}")
    if not key.strip():
        raise InvalidTaskArguments("the unique key is empty")
    check_text("the unique key", key, defaults.UNIQUE_KEY_MAX_CHARS)


def task_unique_key(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A ``unique=True`` task's key: its name and a hash of its arguments.

    The arguments are taken by parameter name with defaults applied (``f(1)`` and
    ``f(x=1)`` are one key), as canonical JSON (sorted keys, no spaces), hashed with
    SHA-256: stable across processes, machines and Python versions. The name is cut so
    the key fits ``UNIQUE_KEY_MAX_CHARS``; the hash covers the whole name.
    """
    import hashlib
    import json

    bound = spec.bind(args, kwargs)
    canonical = json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(f"{spec.name}\0{canonical}".encode()).hexdigest()
    return f"{spec.name[: defaults.UNIQUE_KEY_MAX_CHARS - len(digest) - 1]}:{digest}"


def check_arguments(
    spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments half of :func:`plan_task`: bound, typed, validated, JSON-checked.

    Returns the arguments the row and the job carry (a ``validate`` may normalise them).
    ``enqueue_many`` runs it for every item of a batch, the options once.
    """
    bound = spec.bind(args, kwargs)
    check_types(spec, {name: _plain(value) for name, value in bound.items()})
    if spec.validate is not None:
        try:
            normalised = spec.validate(bound)
        except InvalidInput:
            raise
        except (ValueError, TypeError) as exc:
            # the documented contract: a validate function refuses with any of these
            raise InvalidTaskArguments(f"{spec.name}: {exc}") from None
        if normalised is not None:
            if not isinstance(normalised, dict):
                raise TaskDefinitionError(
                    f"task {spec.name!r}: its validate function returned {type(normalised).__name__}; "
                    "it must return None or a dict of arguments by parameter name"
                )
            # e.g. relative paths made absolute: the worker's cwd is not the caller's
            args, kwargs = (), _as_keyword_arguments(spec, normalised)
            spec.bind(args, kwargs)
    args = tuple(_plain(a) for a in args)
    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    check_json(spec, args, kwargs)
    return args, kwargs


def plan_task(
    settings: Settings,
    task: str | Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    description: str,
    queue: str | None = None,
    timeout_s: int | None = None,
    retries: int | None = None,
    retry_interval_s: int | list[int] | None = None,
    at: datetime | None = None,
    delay_s: float | None = None,
) -> TaskPlan:
    """The checks of :func:`check_task` against given settings (the schedule ticker's entry).

    Every limit a database enforces is checked here, so SQLite, PostgreSQL and MariaDB
    refuse the same input the same way, before a row is written.
    """
    if not isinstance(description, str) or not description.strip():
        raise InvalidTaskArguments("a task needs a non-empty description")
    check_text("the description", description.strip(), defaults.DESCRIPTION_MAX_CHARS)
    spec = task_spec(task)
    check_text("the task name", spec.name, defaults.NAME_MAX_CHARS)
    args, kwargs = check_arguments(spec, args, kwargs)
    queue_name, timeout, max_retries, intervals = _resolve_options(
        spec, settings, queue, timeout_s, retries, retry_interval_s
    )
    return TaskPlan(
        spec.name,
        description.strip(),
        queue_name,
        args,
        kwargs,
        timeout,
        max_retries,
        intervals,
        resolve_schedule(at, delay_s),
    )
