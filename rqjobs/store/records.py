"""A task row as callers see it (a detached snapshot), and the blocks of its ``log`` column."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rqjobs.status import TaskStatus
from rqjobs.store.models import TASK_COLUMNS, utcnow


@dataclass(frozen=True)
class TaskRecord:
    """A snapshot of one row, detached from any session."""

    id: int
    name: str
    description: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    status: str
    progress: int
    progress_message: str | None
    result: Any
    log: str | None
    attempts: int
    max_retries: int
    retry_intervals: list[int] | None
    timeout_s: int
    created_at: datetime
    enqueued_at: datetime | None
    scheduled_for: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None

    @property
    def job_id(self) -> str:
        return str(self.id)

    @property
    def duration_s(self) -> float | None:
        """Run time of the last attempt, if it started (and, for a live one, so far)."""
        if self.started_at is None:
            return None
        end = self.finished_at or (utcnow() if self.status == TaskStatus.RUNNING else None)
        return None if end is None else max(0.0, (end - self.started_at).total_seconds())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 in UTC."""
        out: dict[str, Any] = {}
        for name in TASK_COLUMNS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["duration_s"] = self.duration_s
        return out


def record_of(row: Any) -> TaskRecord:
    return TaskRecord(**{name: row._mapping[name] for name in TASK_COLUMNS})


def attempt_log_entry(
    attempt: int, what: str, detail: str, when: datetime | None = None, where: str = ""
) -> str:
    """One block of the ``log`` column: a header line, then the traceback or reason."""
    when = when or utcnow()
    place = f" on {where}" if where else ""
    detail = detail.rstrip("\n")
    return f"--- attempt {attempt} {what} at {when.isoformat(timespec='seconds')}{place} ---\n{detail}\n"
