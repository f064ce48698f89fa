"""rqjobs: RQ's simplicity plus one durable, truthful SQL row per job.

The public API is re-exported here lazily so that ``import rqjobs`` (and ``rqjobs
--help``) stays cheap: nothing imports rq, redis or SQLAlchemy until it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "PermanentTaskError",
    "RqjobsError",
    "TaskRecord",
    "__version__",
    "background_task",
    "enqueue_task",
    "get_task_record",
    "set_task_progress",
]

if TYPE_CHECKING:
    from rqjobs.api import enqueue_task, get_task_record
    from rqjobs.exceptions import PermanentTaskError, RqjobsError
    from rqjobs.store.repository import TaskRecord
    from rqjobs.tasks.commons import background_task, set_task_progress

_LAZY = {
    "enqueue_task": "rqjobs.api",
    "get_task_record": "rqjobs.api",
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
