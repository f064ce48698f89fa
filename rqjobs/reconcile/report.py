"""What a reconcile pass reports, and the row snapshot it decides from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Change:
    """One thing reconcile changed (or, in a dry run, would change)."""

    task_id: int
    from_status: str
    to_status: str
    action: str
    reason: str
    applied: bool = True

    def describe(self) -> str:
        states = (
            self.from_status
            if self.from_status == self.to_status
            else f"{self.from_status} -> {self.to_status}"
        )
        verb = self.action if self.applied else f"would be {self.action}"
        return f"task {self.task_id} ({states}) {verb}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "from": self.from_status,
            "to": self.to_status,
            "action": self.action,
            "reason": self.reason,
            "applied": self.applied,
        }


@dataclass
class ReconcileReport:
    dry_run: bool
    checked: int = 0
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """The columns reconcile decides on; a conditional update checks them again."""

    id: int
    name: str
    status: str
    queue: str
    attempts: int
    max_retries: int
    retry_intervals: list[int] | None
    timeout_s: int
    worker: str | None
    enqueued_at: datetime | None
    scheduled_for: datetime | None
    started_at: datetime | None

    @classmethod
    def of(cls, record: Any) -> Row:
        return cls(**{name: getattr(record, name) for name in cls.__dataclass_fields__})
