"""SQL of recurring tasks: claiming a tick, the ``schedules`` state table, pause and resume.

The guarantee "one row per (schedule, tick), whichever workers race for it" rests on the
unique index ``uq_tasks_schedule_tick`` alone. Every worker that sees a tick due runs
:meth:`ScheduleStore.claim_tick`: one transaction that inserts the tick's row and moves the
schedule's ``last_tick`` on. The first to commit wins; the others either see ``last_tick``
already past the tick, or (when they raced all the way to the INSERT) get the unique
violation and roll back. The caller enqueues the job only after the commit, so a worker
that dies in between leaves a ``queued`` row with no job: reconcile's outbox enqueues it
(:mod:`rqjobs.reconcile`), and the tick is neither lost nor doubled.

Like :mod:`rqjobs.store.repository`, every statement runs through
:func:`rqjobs.store.retry.run_with_retry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from rqjobs import defaults
from rqjobs.status import WAITING, TaskStatus
from rqjobs.store.models import schedules_table, tasks_table, utcnow
from rqjobs.store.records import TaskRecord, record_of
from rqjobs.store.retry import run_with_retry

T = TypeVar("T")

_s = schedules_table.c
_t = tasks_table.c
#: a previous row in one of these makes skip_if_running skip the tick
BUSY = (*WAITING, TaskStatus.RUNNING.value)


@dataclass(frozen=True)
class ScheduleState:
    """One ``schedules`` row."""

    name: str
    last_tick: datetime | None
    last_task_id: int | None
    paused: bool
    paused_at: datetime | None
    paused_by: str | None


@dataclass(frozen=True)
class Claim:
    """What :meth:`ScheduleStore.claim_tick` did.

    ``outcome``: ``created`` (``record`` must now be enqueued), ``skipped`` (``record`` is
    the canceled row that says so), ``taken`` (another worker handled the tick), ``paused``.
    """

    outcome: str
    record: TaskRecord | None = None


def _state(row: Any) -> ScheduleState:
    m = row._mapping
    return ScheduleState(
        name=m["name"],
        last_tick=m["last_tick"],
        last_task_id=m["last_task_id"],
        paused=bool(m["paused"]),
        paused_at=m["paused_at"],
        paused_by=m["paused_by"],
    )


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class ScheduleStore:
    """Schedule state and tick claims on one database; cheap to construct."""

    def __init__(self, engine: Engine, *, retry_s: float = defaults.DB_RETRY_S) -> None:
        self.engine = engine
        self.retry_s = retry_s

    def _run(
        self,
        what: str,
        work: Callable[[Connection], T],
        *,
        readonly: bool = False,
        verify: Callable[[Connection], T | None] | None = None,
    ) -> T:
        return run_with_retry(
            self.engine, work, budget_s=self.retry_s, what=what, readonly=readonly, verify=verify
        )

    # -- reads ------------------------------------------------------------------------------

    def states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """The state rows of these schedules (a schedule never seen by a worker has none)."""
        if not names:
            return {}
        stmt = select(schedules_table).where(_s.name.in_(list(names)))
        return self._run(
            "read schedule states",
            lambda conn: {row.name: _state(row) for row in conn.execute(stmt)},
            readonly=True,
        )

    def last_tick_rows(self, names: Sequence[str]) -> dict[str, TaskRecord]:
        """schedule name -> the row of its newest tick that has one (one index seek each)."""

        def work(conn: Connection) -> dict[str, TaskRecord]:
            out: dict[str, TaskRecord] = {}
            for name in names:
                stmt = (
                    select(tasks_table)
                    .where(_t.schedule == name, _t.schedule_tick.is_not(None))
                    .order_by(_t.schedule_tick.desc())
                    .limit(1)
                )
                row = conn.execute(stmt).first()
                if row is not None:
                    out[name] = record_of(row)
            return out

        return self._run("read the rows of the last ticks", work, readonly=True)

    # -- writes -----------------------------------------------------------------------------

    def ensure_state(self, name: str, last_tick: datetime | None) -> ScheduleState:
        """The schedule's state row, made (starting at ``last_tick``) if it has none yet."""

        def work(conn: Connection) -> ScheduleState:
            row = conn.execute(select(schedules_table).where(_s.name == name)).first()
            if row is not None:
                return _state(row)
            values = {"name": name, "last_tick": last_tick, "paused": False, "updated_at": utcnow()}
            conn.execute(insert(schedules_table), values)
            return ScheduleState(name, last_tick, None, False, None, None)

        try:
            return self._run(f"start schedule {name}", work)
        except IntegrityError:  # another worker made it at the same moment: read theirs
            return self.states([name])[name]

    def advance(self, name: str, tick: datetime) -> bool:
        """Mark ticks up to ``tick`` handled without a row (catch_up passed over them)."""
        stmt = (
            update(schedules_table)
            .where(_s.name == name, or_(_s.last_tick.is_(None), _s.last_tick < tick))
            .values(last_tick=tick, updated_at=utcnow())
        )
        return self._run(
            f"move schedule {name} past {tick.isoformat()}", lambda c: c.execute(stmt).rowcount == 1
        )

    def claim_tick(
        self, name: str, tick: datetime, values: dict[str, Any], *, skip_if_running: bool
    ) -> Claim:
        """Make the one row of (``name``, ``tick``) if no worker has; commit before returning.

        ``values`` are the row's columns (:func:`rqjobs.store.repository.row_values`). When
        ``skip_if_running`` and the schedule's previous row is still waiting or running, the
        row is made ``canceled`` with a log saying so (the tick is recorded, not stacked).
        """
        values = {**values, "schedule": name, "schedule_tick": tick}
        created_at = values["created_at"]

        def work(conn: Connection) -> Claim:
            state = conn.execute(select(schedules_table).where(_s.name == name)).first()
            if state is not None and state.paused:
                return Claim("paused")
            if state is not None and state.last_tick is not None and state.last_tick >= tick:
                return Claim("taken")
            row = dict(values)
            skipped = False
            previous = state.last_task_id if state is not None else None
            if skip_if_running and previous is not None:
                busy = conn.execute(select(_t.status).where(_t.id == previous)).scalar()
                if busy in BUSY:
                    skipped = True
                    row.update(
                        status=TaskStatus.CANCELED.value,
                        finished_at=created_at,
                        log=f"--- skipped at {created_at.isoformat(timespec='seconds')} ---\n"
                        f"skipped: previous #{previous} still {busy} (skip_if_running)\n",
                    )
            task_id = _inserted_id(conn.execute(insert(tasks_table), row))
            moved: dict[str, Any] = {"last_tick": tick, "updated_at": created_at}
            if not skipped:
                moved["last_task_id"] = task_id
            if state is None:
                conn.execute(insert(schedules_table), {"name": name, "paused": False, **moved})
            else:
                conn.execute(update(schedules_table).where(_s.name == name).values(moved))
            return Claim("skipped" if skipped else "created", TaskRecord(id=task_id, **row))

        def landed(conn: Connection) -> Claim | None:
            # our COMMIT's reply was lost: the tick's row is ours only if it is this very insert
            found = conn.execute(
                select(tasks_table).where(
                    _t.schedule == name, _t.schedule_tick == tick, _t.created_at == created_at
                )
            ).first()
            if found is None:
                return None
            record = record_of(found)
            return Claim("created" if record.status in WAITING else "skipped", record)

        try:
            return self._run(f"claim tick {tick.isoformat()} of schedule {name}", work, verify=landed)
        except IntegrityError:
            # another worker inserted this tick's row between our read and our insert
            return Claim("taken")

    def record_run(self, name: str, values: dict[str, Any]) -> TaskRecord:
        """A row for ``schedule run NAME``: outside the ticks (no tick, so no unique clash)."""
        values = {**values, "schedule": name, "schedule_tick": None}
        created_at = values["created_at"]

        def work(conn: Connection) -> TaskRecord:
            task_id = _inserted_id(conn.execute(insert(tasks_table), values))
            moved = {"last_task_id": task_id, "updated_at": created_at}
            if conn.execute(update(schedules_table).where(_s.name == name).values(moved)).rowcount == 0:
                conn.execute(insert(schedules_table), {"name": name, "paused": False, **moved})
            return TaskRecord(id=task_id, **values)

        def landed(conn: Connection) -> TaskRecord | None:
            found = conn.execute(
                select(tasks_table).where(_t.schedule == name, _t.created_at == created_at)
            ).first()
            return None if found is None else record_of(found)

        return self._run(f"record a run of schedule {name}", work, verify=landed)

    def set_paused(self, name: str, paused: bool, *, by: str, resume_from: datetime | None = None) -> bool:
        """Pause or resume; True when the state changed. A resume starts again at
        ``resume_from`` (the newest tick so far), so ticks that passed while paused are
        not caught up."""
        now = utcnow()
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if paused:
            values.update(paused_at=now, paused_by=by)
        else:
            values.update(paused_at=None, paused_by=None)

        def work(conn: Connection) -> bool:
            row = conn.execute(select(_s.paused, _s.last_tick).where(_s.name == name)).first()
            changes = dict(values)
            if (
                not paused
                and resume_from is not None
                and (row is None or not row.last_tick or row.last_tick < resume_from)
            ):
                changes["last_tick"] = resume_from
            if row is None:
                conn.execute(insert(schedules_table), {"name": name, **changes})
                return paused
            if bool(row.paused) == paused:
                return False
            conn.execute(update(schedules_table).where(_s.name == name).values(changes))
            return True

        try:
            return self._run(f"{'pause' if paused else 'resume'} schedule {name}", work)
        except IntegrityError:  # a worker made the state row at this moment: once more
            return self._run(f"{'pause' if paused else 'resume'} schedule {name}", work)
