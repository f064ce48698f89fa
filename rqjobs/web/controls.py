"""The dashboard's flow controls: the Schedules page, and pausing schedules and queues.

Schedules go through :mod:`rqjobs.schedules.service`, the same calls as ``rqjobs schedule
list/pause/resume``, so the page shows and does what the command line does. Paused queues
(issue 14) live in SQL, in :class:`~rqjobs.store.queues.QueueStore`, which workers read
before they take a job; the web pauses and resumes them through it, as ``rqjobs pause``
does. Every action is a POST that carried the CSRF token (checked for the whole blueprint
in :mod:`rqjobs.web.views`) and none is possible in read-only mode; after one, the browser
is sent back (303) to the page it came from, which then shows the new state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, redirect, render_template, request, url_for

from rqjobs.exceptions import InvalidInput, RqjobsError

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime
    from rqjobs.schedules.service import ScheduleView
    from rqjobs.store.queues import PausedQueue, QueueStore

#: ticks the overview lists
NEXT_TICKS = 5
#: the notices a redirect may ask the page to show (nothing else in the URL becomes text)
NOTICES = {
    "paused": "{kind} {name} paused",
    "resumed": "{kind} {name} resumed",
    "already-paused": "{kind} {name} was already paused",
    "already-resumed": "{kind} {name} was not paused",
}


@dataclass(frozen=True)
class ScheduleRow:
    """One line of the Schedules page: the library's view plus what the page adds."""

    view: ScheduleView
    #: the queue its rows go to (the schedule's, else the task's, else the default)
    queue: str
    paused_at: datetime | None
    paused_by: str | None


def queue_store(rt: Runtime) -> QueueStore:
    """The paused-queues store on the runtime's database (cheap: it shares the engine)."""
    from rqjobs.store.queues import QueueStore

    return QueueStore(rt.store.engine, retry_s=rt.settings.db_retry_s)


def paused_queues(rt: Runtime) -> list[PausedQueue]:
    return queue_store(rt).paused()


def schedule_rows(rt: Runtime) -> list[ScheduleRow]:
    """Every configured schedule, as ``rqjobs schedule list`` sees it, with its queue and who paused it."""
    from rqjobs.schedules.service import list_schedules
    from rqjobs.schedules.ticker import schedule_store
    from rqjobs.tasks.registry import registered_tasks

    views = list_schedules(rt)
    states = schedule_store(rt).states([v.spec.name for v in views]) if views else {}
    tasks = registered_tasks()
    rows = []
    for view in views:
        task = tasks.get(view.spec.task)
        queue = view.spec.queue or (task.queue if task else None) or rt.settings.default_queue
        state = states.get(view.spec.name)
        rows.append(
            ScheduleRow(
                view,
                queue,
                state.paused_at if state and view.paused else None,
                state.paused_by if state and view.paused else None,
            )
        )
    return rows


def next_ticks(rt: Runtime) -> tuple[list[ScheduleView], str | None]:
    """The soonest ticks of the active schedules, and an error to show instead of failing the page."""
    if not rt.settings.schedules:
        return [], None
    from rqjobs.schedules.service import list_schedules

    try:
        views = list_schedules(rt)
    except RqjobsError as exc:  # e.g. a schedule naming a task this process cannot import
        return [], exc.message
    due = sorted((v for v in views if v.next_tick is not None), key=lambda v: v.next_tick or datetime.max)
    return due[:NEXT_TICKS], None


def notice() -> str | None:
    """The sentence a redirect after an action asked for (from a fixed list; names are escaped)."""
    word, kind, name = (request.args.get(k, "") for k in ("done", "kind", "name"))
    if word not in NOTICES or kind not in ("schedule", "queue") or not name:
        return None
    return NOTICES[word].format(kind=kind, name=name[:200])


def register(bp: Blueprint, get_runtime: Callable[[], Runtime]) -> None:
    """Add the Schedules page and the pause/resume actions to the dashboard's blueprint."""

    @bp.get("/schedules")
    def schedules() -> Any:
        rt = get_runtime()
        return render_template(
            "rqjobs_web/schedules.html",
            nav="schedules",
            rows=schedule_rows(rt),
            notice=notice(),
        )

    @bp.post("/schedules/pause")
    def pause_schedule() -> Any:
        return _set_schedule(get_runtime(), True)

    @bp.post("/schedules/resume")
    def resume_schedule() -> Any:
        return _set_schedule(get_runtime(), False)

    def _set_schedule(rt: Runtime, paused: bool) -> Any:
        from rqjobs.schedules.service import set_paused

        name = request.form.get("name", "")
        if not name:
            raise InvalidInput("which schedule? (the form sent no name)")
        changed = set_paused(rt, name, paused)  # UnknownSchedule: a 400 that names the known ones
        word = (
            ("paused" if paused else "resumed") if changed else f"already-{'paused' if paused else 'resumed'}"
        )
        return redirect(url_for(".schedules", done=word, kind="schedule", name=name), code=303)

    @bp.post("/queues/pause")
    def pause_queue() -> Any:
        return _set_queue(get_runtime(), True)

    @bp.post("/queues/resume")
    def resume_queue() -> Any:
        return _set_queue(get_runtime(), False)

    def _set_queue(rt: Runtime, paused: bool) -> Any:
        from rqjobs import defaults
        from rqjobs.api import operator_label

        queue = request.form.get("queue", "")
        plain = queue.replace("-", "").replace("_", "").replace(".", "")
        if not plain.isascii() or not plain.isalnum() or len(queue) > defaults.QUEUE_MAX_CHARS:
            raise InvalidInput(f"invalid queue name {queue[:80]!r}")
        store = queue_store(rt)
        if paused:
            changed = bool(store.pause([queue], by=f"{operator_label()} (rqjobs web)"))
        else:
            changed = bool(store.resume([queue]))
        word = (
            ("paused" if paused else "resumed") if changed else f"already-{'paused' if paused else 'resumed'}"
        )
        return redirect(url_for(".overview", done=word, kind="queue", name=queue, _anchor="queues"), code=303)


__all__ = ["NEXT_TICKS", "ScheduleRow", "next_ticks", "notice", "paused_queues", "register", "schedule_rows"]
