"""Task statuses and which transitions may follow which (docs/ARCHITECTURE.md, "The row's life").

Kept free of SQLAlchemy and RQ so the CLI can import it cheaply.
"""

from __future__ import annotations

from enum import Enum


class TaskStatus(str, Enum):
    """The status column's values."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    #: waiting for its parents (`--after`): no job in Redis until every parent finished
    DEFERRED = "deferred"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


#: waiting to run: a job for them is (or should be) in Redis
WAITING = (TaskStatus.QUEUED.value, TaskStatus.SCHEDULED.value)
#: nothing will change these rows on its own
FINAL = (TaskStatus.FINISHED.value, TaskStatus.FAILED.value, TaskStatus.CANCELED.value)
#: statuses a new attempt may be started from (`rqjobs retry`)
RETRYABLE = (TaskStatus.FAILED.value, TaskStatus.CANCELED.value)
ALL = tuple(s.value for s in TaskStatus)
