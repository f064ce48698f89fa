"""A task request checked against the registry, before anything is written.

``enqueue_task`` and the schedule ticker share this: the task must be registered, its
arguments must bind to the function's signature and be JSON, the task's own ``validate``
may normalise them, and queue, timeout and retries are resolved from the request, the
task and the settings. A refusal is an :class:`~rqjobs.exceptions.InvalidInput`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rqjobs.exceptions import InvalidTaskArguments, TaskDefinitionError
from rqjobs.tasks.registry import TaskSpec, get_task

if TYPE_CHECKING:
    from rqjobs.config import Settings


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
    if not queue or not queue.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidTaskArguments(f"invalid queue name {queue!r}")
    if not 0 < timeout <= MAX_SECONDS:
        raise InvalidTaskArguments(f"timeout must be between 1 and {MAX_SECONDS} seconds, got {timeout}")
    if not 0 <= max_retries <= MAX_RETRIES:
        raise InvalidTaskArguments(f"retries must be between 0 and {MAX_RETRIES}, got {max_retries}")
    if not intervals or any((not isinstance(i, int)) or not 0 <= i <= MAX_SECONDS for i in intervals):
        raise InvalidTaskArguments(
            f"retry intervals must be seconds between 0 and {MAX_SECONDS}, got {interval!r}"
        )
    return queue, timeout, max_retries, (intervals if any(intervals) else None)


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


@dataclass(frozen=True)
class PreparedTask:
    """A task request that passed every check: what its row will say."""

    name: str
    description: str
    queue: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout_s: int
    max_retries: int
    retry_intervals: list[int] | None

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
        }


def prepare_task(
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
) -> PreparedTask:
    """Validate a task request against the registry (enqueue_task and the schedules share
    this); raises :class:`~rqjobs.exceptions.InvalidInput` with nothing written."""
    if not isinstance(description, str) or not description.strip():
        raise InvalidTaskArguments("a task needs a non-empty description")
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
    return PreparedTask(
        spec.name, description.strip(), queue_name, tuple(args), dict(kwargs), timeout, max_retries, intervals
    )
