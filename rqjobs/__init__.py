"""rqjobs: RQ's simplicity plus one durable, truthful SQL row per job.

The public API is re-exported here lazily so that ``import rqjobs`` (and ``rqjobs
--help``) stays cheap: nothing imports rq, redis or SQLAlchemy until it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "InvalidDependency",
    "InvalidInput",
    "InvalidTaskArguments",
    "PermanentTaskError",
    "RqjobsError",
    "TaskOutcome",
    "TaskRecord",
    "__version__",
    "background_task",
    "cancel_tasks",
    "configure",
    "enqueue_many",
    "enqueue_task",
    "get_task",
    "get_task_record",
    "list_tasks",
    "pause_queues",
    "paused_queues",
    "resume_queues",
    "retry_tasks",
    "set_task_progress",
]

if TYPE_CHECKING:
    from rqjobs.api import TaskOutcome, cancel_tasks, enqueue_task, retry_tasks
    from rqjobs.bulk import enqueue_many
    from rqjobs.exceptions import (
        InvalidDependency,
        InvalidInput,
        InvalidTaskArguments,
        PermanentTaskError,
        RqjobsError,
    )
    from rqjobs.flow import pause_queues, paused_queues, resume_queues
    from rqjobs.queries import get_task, get_task_record, list_tasks
    from rqjobs.runtime import configure
    from rqjobs.store.repository import TaskRecord
    from rqjobs.tasks.commons import background_task, set_task_progress

_LAZY = {
    "configure": "rqjobs.runtime",
    "enqueue_task": "rqjobs.api",
    "enqueue_many": "rqjobs.bulk",
    "get_task": "rqjobs.queries",
    "get_task_record": "rqjobs.queries",
    "list_tasks": "rqjobs.queries",
    "retry_tasks": "rqjobs.api",
    "cancel_tasks": "rqjobs.api",
    "pause_queues": "rqjobs.flow",
    "resume_queues": "rqjobs.flow",
    "paused_queues": "rqjobs.flow",
    "TaskOutcome": "rqjobs.api",
    "InvalidDependency": "rqjobs.exceptions",
    "InvalidInput": "rqjobs.exceptions",
    "InvalidTaskArguments": "rqjobs.exceptions",
    "RqjobsError": "rqjobs.exceptions",
    "TaskRecord": "rqjobs.store.repository",
    "PermanentTaskError": "rqjobs.exceptions",
    "background_task": "rqjobs.tasks.commons",
    "set_task_progress": "rqjobs.tasks.commons",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rqjobs' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
