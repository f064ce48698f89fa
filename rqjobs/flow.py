"""Flow control an operator sets: paused queues and per-task concurrency limits (issue 14).

Nothing here prints; the CLI (``rqjobs pause``/``resume``, ``status``, ``schedule list``)
renders what these return, and the worker (:mod:`rqjobs.worker.flow`) obeys them.

* **Pause** is kept in SQL (``paused_queues``, :class:`rqjobs.store.queues.QueueStore`), not
  in Redis, so a Redis restart or data loss does not quietly resume a queue. A paused queue's
  jobs stay in Redis and their rows stay ``queued``; workers skip the queue within about a
  second and the jobs run after a resume.
* **Limits**: ``@background_task(max_running=N)``, overridden by ``[limits]`` in rqjobs.toml.
  The slots live in Redis (:mod:`rqjobs.broker.slots`), because they are about running
  processes, which die with their Redis as much as with their database.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rqjobs import defaults
from rqjobs.exceptions import ConfigError, InvalidInput

if TYPE_CHECKING:
    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime
    from rqjobs.store.queues import PausedQueue, QueueStore
    from rqjobs.tasks.registry import TaskSpec


def queue_store(runtime: Runtime, *, retry_s: float | None = None) -> QueueStore:
    """The pause table on the runtime's task database (``retry_s``: the retry budget)."""
    from rqjobs.store.queues import QueueStore

    budget = runtime.settings.db_retry_s if retry_s is None else retry_s
    return QueueStore(runtime.store.engine, retry_s=budget)


def check_queue_names(queues: Sequence[str]) -> list[str]:
    """The names, each checked like an enqueue's ``--queue``; duplicates dropped.

    Refused (:class:`InvalidInput`, nothing written) rather than stored: a paused queue
    that can never exist would sit in every listing, pausing nothing.
    """
    names: list[str] = []
    for queue in queues:
        plain = (queue or "").replace("-", "").replace("_", "").replace(".", "")
        if not plain.isascii() or not plain.isalnum():
            raise InvalidInput(f"invalid queue name {(queue or '')[:80]!r}")
        if len(queue) > defaults.QUEUE_MAX_CHARS:
            raise InvalidInput(
                f"the queue name is {len(queue)} characters long; the limit is {defaults.QUEUE_MAX_CHARS}"
            )
        if queue not in names:
            names.append(queue)
    return names


def known_queues(runtime: Runtime) -> list[str]:
    """Every queue anyone could mean by "all": the configured ones (default queue, the
    tasks' and schedules' queues), the queues RQ knows of, and the queues of the rows
    that are waiting or running (read through the status index: cheap on a big table).

    A Redis that does not answer leaves its part out rather than failing a pause.
    """
    from rqjobs.store.models import utcnow
    from rqjobs.tasks.registry import load_task_modules

    settings = runtime.settings
    found = {settings.default_queue}
    found.update(spec.queue for spec in load_task_modules(settings).values() if spec.queue)
    found.update(s.queue for s in settings.schedules if s.queue)
    try:
        from rqjobs.broker.rq_internals import queue_names

        found.update(queue_names(runtime.redis))
    except Exception as exc:
        from rqjobs.broker.connection import is_broker_error

        if not is_broker_error(exc):
            raise
    found.update(runtime.store.counts_by_queue_and_status(ended_since=utcnow()))
    return sorted(q for q in found if q)


def _operator() -> str:
    """``user@host:pid`` of the process that pauses: who, from where."""
    from rqjobs.api import operator_label

    return f"{operator_label()}:{os.getpid()}"


def pause_queues(
    queues: Sequence[str] = (),
    *,
    all_known: bool = False,
    by: str | None = None,
    runtime: Runtime | None = None,
) -> list[str]:
    """Pause queues: workers stop taking their jobs within about a second.

    Running jobs finish; queued ones stay queued (row and Redis). ``all_known`` pauses
    every queue :func:`known_queues` finds, besides ``queues``. Returns the queues that
    were not paused before. ``by`` is recorded (default ``user@host:pid``).
    """
    from rqjobs.runtime import get_runtime

    runtime = runtime or get_runtime()
    names = check_queue_names(queues)
    if all_known:
        names += [q for q in known_queues(runtime) if q not in names]
    if not names:
        raise InvalidInput("name the queues to pause, or use --all")
    return queue_store(runtime).pause(names, by=(by or _operator())[:200])


def resume_queues(
    queues: Sequence[str] = (), *, all_paused: bool = False, runtime: Runtime | None = None
) -> list[str]:
    """Resume queues (``all_paused``: every paused queue); returns those that were paused."""
    from rqjobs.runtime import get_runtime

    runtime = runtime or get_runtime()
    names = check_queue_names(queues)
    if all_paused:
        return queue_store(runtime).resume(None)
    if not names:
        raise InvalidInput("name the queues to resume, or use --all")
    return queue_store(runtime).resume(names)


def paused_queues(runtime: Runtime | None = None) -> list[PausedQueue]:
    """Every paused queue with since when and by whom (``queue``, ``paused_at``, ``paused_by``)."""
    from rqjobs.runtime import get_runtime

    return queue_store(runtime or get_runtime()).paused()


# -- concurrency limits --------------------------------------------------------------------


def concurrency_limit(spec: TaskSpec, settings: Settings) -> int | None:
    """The most jobs of ``spec`` that may run at once: ``[limits]``, else the decorator's."""
    configured = settings.limits.get(spec.name)
    return configured if configured is not None else spec.max_running


def check_limits(settings: Settings) -> None:
    """Refuse ``[limits]`` entries naming no registered task: a typo would silently limit nothing."""
    from rqjobs.tasks.registry import registered_tasks

    known = registered_tasks()
    unknown = sorted(name for name in settings.limits if name not in known)
    if unknown:
        where = settings.config_path or "config"
        raise ConfigError(
            f"{where}: [limits] names no registered task: {', '.join(unknown)} "
            f"(registered: {', '.join(known) or 'none'})"
        )


@dataclass(frozen=True)
class LimitUsage:
    """One limited task: its limit and the jobs holding a slot now (``<job id>@<worker>``)."""

    task: str
    limit: int
    holders: tuple[str, ...]

    @property
    def running(self) -> int:
        return len(self.holders)


def limit_usage(runtime: Runtime | None = None) -> list[LimitUsage]:
    """Every task with a concurrency limit and how many of its slots are held now."""
    from rqjobs.broker.slots import holders
    from rqjobs.runtime import ready_runtime
    from rqjobs.tasks.registry import registered_tasks

    runtime = ready_runtime(runtime)
    limits = {
        name: n
        for name, spec in registered_tasks().items()
        if (n := concurrency_limit(spec, runtime.settings)) is not None
    }
    held = holders(runtime.redis, sorted(limits))
    return [LimitUsage(name, limits[name], tuple(held.get(name, ()))) for name in sorted(limits)]


__all__ = [
    "LimitUsage",
    "check_limits",
    "check_queue_names",
    "concurrency_limit",
    "known_queues",
    "limit_usage",
    "pause_queues",
    "paused_queues",
    "resume_queues",
]
