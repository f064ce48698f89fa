"""A task row as callers see it (a detached snapshot), and the blocks of its ``log`` column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
    #: the [[schedule]] that made the row, and the tick it is for (None: not scheduled, or run by hand)
    schedule: str | None = None
    schedule_tick: datetime | None = None
    #: when the running task last reported progress (None: it has not)
    progress_at: datetime | None = None
    #: the key of a unique task (`--unique-key`); while the row is live, no other live row has it
    unique_key: str | None = None
    #: the tasks this one waits for (`--after`), from ``task_dependencies``; () for none
    after: tuple[int, ...] = ()
    #: True when an enqueue found a live row with the same unique key and returned it
    #: instead of creating one (``enqueue_task(..., unique_key=...)``, ``enqueue_many``);
    #: not a column: False on every record read from the database
    existing: bool = field(default=False, compare=False)

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

    @property
    def error(self) -> str | None:
        """Why a failed row failed: the last line of its last log block (the exception).

        None unless the row is ``failed``; the whole log is in ``log`` (``rqjobs show``).
        """
        if self.status != TaskStatus.FAILED or not self.log:
            return None
        last_block = self.log.rsplit("\n--- ", 1)[-1]
        lines = [line.strip() for line in last_block.splitlines() if line.strip()]
        body = lines[1:] if lines and lines[0].endswith("---") else lines  # the block's header line
        chosen = body or lines
        return chosen[-1] if chosen else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: datetimes as ISO 8601 in UTC; ``error`` is :attr:`error`."""
        out: dict[str, Any] = {}
        for name in TASK_COLUMNS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["after"] = list(self.after)
        out["duration_s"] = self.duration_s
        out["error"] = self.error
        return out


def record_of(row: Any) -> TaskRecord:
    return TaskRecord(**{name: row._mapping[name] for name in TASK_COLUMNS})


def attempt_log_entry(
    attempt: int, what: str, detail: str, when: datetime | None = None, where: str = ""
) -> str:
    """One block of the ``log`` column: a header line, then the traceback or reason."""
    when = when or utcnow()
    place = f" on {where}" if where else ""
    from rqjobs.redact import redact

    detail = redact(detail.rstrip("\n"))  # a traceback or reason may quote a URL with its password
    return f"--- attempt {attempt} {what} at {when.isoformat(timespec='seconds')}{place} ---\n{detail}\n"


def row_values(
    *,
    name: str,
    description: str,
    queue: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    timeout_s: int,
    max_retries: int = 0,
    retry_intervals: list[int] | None = None,
    scheduled_for: datetime | None = None,
    status: str | None = None,
    worker: str | None = None,
    attempts: int = 0,
    started_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Every column of a new row (``extra``: more columns, e.g. the schedule's)."""
    now = utcnow()
    return {
        "name": name,
        "description": description,
        "queue": queue,
        "args": list(args),
        "kwargs": dict(kwargs),
        "status": status or (TaskStatus.SCHEDULED if scheduled_for else TaskStatus.QUEUED).value,
        "progress": 0,
        "progress_message": None,
        "result": None,
        "log": None,
        "attempts": attempts,
        "max_retries": max_retries,
        "retry_intervals": retry_intervals,
        "timeout_s": timeout_s,
        "created_at": now,
        "enqueued_at": now,
        "scheduled_for": scheduled_for,
        "started_at": started_at,
        "finished_at": None,
        "worker": worker,
        **extra,
    }
