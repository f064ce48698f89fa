"""What an operator does with schedules: list them, run one now, pause and resume.

The CLI (:mod:`rqjobs.cli_schedule`) renders these; nothing here prints. Pause state lives
in SQL (the ``schedules`` table), so it holds across restarts of every worker and of Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rqjobs.schedules.spec import ScheduleSpec, find
from rqjobs.schedules.ticker import check_schedules, new_row_values, schedule_store

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime
    from rqjobs.store.records import TaskRecord


@dataclass(frozen=True)
class ScheduleView:
    """One line of ``rqjobs schedule list``."""

    spec: ScheduleSpec
    next_tick: datetime | None
    #: the newest tick that has a row (made or recorded as skipped)
    last_tick: datetime | None
    last_task_id: int | None
    last_status: str | None
    paused: bool
    #: the queue its rows go to
    queue: str = ""
    #: that queue is paused (``rqjobs pause``): ticks still make rows, which wait queued
    queue_paused: bool = False

    @property
    def state(self) -> str:
        if not self.spec.enabled:
            return "disabled"
        if self.paused:
            return "paused"
        return f"queue {self.queue} paused" if self.queue_paused else "active"

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "name": self.spec.name,
            "task": self.spec.task,
            "spec": self.spec.spec_text,
            "timezone": self.spec.timezone,
            "catch_up": self.spec.catch_up,
            "skip_if_running": self.spec.skip_if_running,
            "enabled": self.spec.enabled,
            "paused": self.paused,
            "queue": self.queue,
            "queue_paused": self.queue_paused,
            "state": self.state,
            "next_tick": iso(self.next_tick),
            "last_tick": iso(self.last_tick),
            "last_task_id": self.last_task_id,
            "last_status": self.last_status,
        }


def _loaded(runtime: Runtime) -> None:
    from rqjobs.tasks.registry import load_task_modules

    load_task_modules(runtime.settings)
    check_schedules(runtime.settings)


def list_schedules(runtime: Runtime) -> list[ScheduleView]:
    """Every configured schedule with its next tick and its last tick's row."""
    from rqjobs.store.models import utcnow

    _loaded(runtime)
    specs = runtime.settings.schedules
    store = schedule_store(runtime)
    states = store.states([s.name for s in specs])
    last_rows = store.last_tick_rows([s.name for s in specs])
    now = utcnow()
    paused_queues = _paused_queue_names(runtime)
    views = []
    for spec in specs:
        queue = _queue_of(runtime, spec)
        state = states.get(spec.name)
        paused = bool(state and state.paused)
        row = last_rows.get(spec.name)
        views.append(
            ScheduleView(
                spec=spec,
                next_tick=spec.next_tick_after(now) if spec.enabled and not paused else None,
                last_tick=row.schedule_tick if row else None,
                last_task_id=row.id if row else None,
                last_status=row.status if row else None,
                paused=paused,
                queue=queue,
                queue_paused=queue in paused_queues,
            )
        )
    return views


def _queue_of(runtime: Runtime, spec: ScheduleSpec) -> str:
    """The queue a schedule's rows go to: its own, else its task's, else the default."""
    from rqjobs.tasks.registry import registered_tasks

    task = registered_tasks().get(spec.task)
    return spec.queue or (task.queue if task else None) or runtime.settings.default_queue


def _paused_queue_names(runtime: Runtime) -> set[str]:
    from rqjobs.flow import paused_queues

    return {p.queue for p in paused_queues(runtime)}


def run_schedule(runtime: Runtime, name: str) -> TaskRecord:
    """A row (and job) for the schedule now, outside its ticks; returns the row.

    Ticks are unaffected, except that skip_if_running sees this row as the previous one.
    """
    _loaded(runtime)
    spec = find(runtime.settings.schedules, name)
    from rqjobs.api import submit_job

    record = schedule_store(runtime).record_run(spec.name, new_row_values(runtime, spec, None))
    submit_job(runtime, record)  # a Redis failure fails the row and raises EnqueueFailed
    return record


def set_paused(runtime: Runtime, name: str, paused: bool) -> bool:
    """Pause (no ticks fire) or resume (the ticks go on from now; those that passed while
    paused are not caught up). True when the state changed."""
    from rqjobs.api import operator_label
    from rqjobs.store.models import utcnow

    _loaded(runtime)
    spec = find(runtime.settings.schedules, name)
    resume_from = None if paused else spec.tick_at_or_before(utcnow())
    return schedule_store(runtime).set_paused(spec.name, paused, by=operator_label(), resume_from=resume_from)
