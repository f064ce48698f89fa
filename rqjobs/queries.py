"""Reading task rows from the public API: one row by id, or a filtered list.

Like the rest of the public API these work in any process with no set-up: the
settings are found as the CLI finds them and the configured task modules are imported
on first use (:func:`rqjobs.runtime.ready_runtime`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rqjobs.exceptions import InvalidInput

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime
    from rqjobs.store.records import TaskRecord


def get_task(task_id: int, runtime: Runtime | None = None) -> TaskRecord | None:
    """The row with this id, or None."""
    from rqjobs.runtime import ready_runtime

    return ready_runtime(runtime).store.get(int(task_id))


#: the name this function had before ``get_task``; kept for code written against it
get_task_record = get_task


def list_tasks(
    *,
    status: str | Sequence[str] = (),
    names: str | Sequence[str] = (),
    since: datetime | None = None,
    limit: int | None = 20,
    runtime: Runtime | None = None,
) -> list[TaskRecord]:
    """Rows newest first, filtered by status(es), task name(s) and creation time.

    ``limit=None`` returns every matching row; the filters combine (all must match).
    """
    from rqjobs.runtime import ready_runtime
    from rqjobs.status import TaskStatus

    statuses = [status] if isinstance(status, str) else list(status)
    known = {s.value for s in TaskStatus}
    wrong = [s for s in statuses if s not in known]
    if wrong:
        raise InvalidInput(f"unknown status {', '.join(wrong)} (one of {', '.join(sorted(known))})")
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}")
    name_list = [names] if isinstance(names, str) else list(names)
    return ready_runtime(runtime).store.find(statuses=statuses, names=name_list, since=since, limit=limit)
