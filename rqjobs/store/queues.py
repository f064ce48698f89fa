"""SQL of paused queues (issue 14): which queues workers must not take jobs from.

The pause lives in SQL, not Redis, so that it survives a Redis restart or data loss.
Workers read :meth:`QueueStore.paused` (a primary-key scan of a tiny table) at most about
once a second; `rqjobs pause`/`resume`, the dashboard and `status` go through the same
methods. Like the other stores, every statement runs through
:func:`rqjobs.store.retry.run_with_retry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Connection, Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from rqjobs import defaults
from rqjobs.store.models import paused_queues_table, utcnow
from rqjobs.store.retry import run_with_retry

T = TypeVar("T")

_q = paused_queues_table.c


@dataclass(frozen=True)
class PausedQueue:
    """One paused queue: since when, and who paused it (``host:pid`` or a user's note)."""

    queue: str
    paused_at: datetime
    paused_by: str | None


class QueueStore:
    """Pause state of queues on one database; cheap to construct."""

    def __init__(self, engine: Engine, *, retry_s: float = defaults.DB_RETRY_S) -> None:
        self.engine = engine
        self.retry_s = retry_s

    def _run(self, what: str, work: Callable[[Connection], T], *, readonly: bool = False) -> T:
        return run_with_retry(self.engine, work, budget_s=self.retry_s, what=what, readonly=readonly)

    def paused(self) -> list[PausedQueue]:
        """Every paused queue, by name."""
        stmt = select(paused_queues_table).order_by(_q.queue)
        return self._run(
            "read paused queues",
            lambda conn: [PausedQueue(r.queue, r.paused_at, r.paused_by) for r in conn.execute(stmt)],
            readonly=True,
        )

    def pause(self, queues: Sequence[str], *, by: str | None) -> list[str]:
        """Pause these queues; returns the ones that were not paused before."""
        now = utcnow()

        def work(conn: Connection) -> list[str]:
            already = {r.queue for r in conn.execute(select(_q.queue).where(_q.queue.in_(list(queues))))}
            new = [q for q in dict.fromkeys(queues) if q not in already]
            if new:
                conn.execute(
                    insert(paused_queues_table),
                    [{"queue": q, "paused_at": now, "paused_by": by} for q in new],
                )
            return new

        try:
            return self._run("pause queues", work)
        except IntegrityError:  # another process paused one of them at this moment: once more
            return self._run("pause queues", work)

    def resume(self, queues: Sequence[str] | None) -> list[str]:
        """Resume these queues (None: every paused queue); returns the ones that were paused."""

        def work(conn: Connection) -> list[str]:
            stmt = select(_q.queue)
            if queues is not None:
                stmt = stmt.where(_q.queue.in_(list(queues)))
            found = [r.queue for r in conn.execute(stmt)]
            if found:
                conn.execute(delete(paused_queues_table).where(_q.queue.in_(found)))
            return sorted(found)

        return self._run("resume queues", work)


__all__ = ["PausedQueue", "QueueStore"]
