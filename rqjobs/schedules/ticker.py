"""The ticker: every worker with the scheduler on fires the schedules' due ticks.

There is no leader and no extra process. Each worker keeps, in memory, when each schedule
is next due and does nothing (no SQL, no Redis) until then; at a tick, every worker that is
awake tries to claim it (:meth:`rqjobs.store.schedules.ScheduleStore.claim_tick`), the
unique index on ``(schedule, schedule_tick)`` lets exactly one row in, and only the winner
enqueues its job, after the commit.

**Missed ticks and catch_up.** A tick that came due while no worker ran is *missed*. The
tickers share one Redis key, :data:`SCHEDULES_ALIVE_SINCE_KEY`: "some ticker has been running without
a break since T". Each ticker refreshes it every :data:`ALIVE_REFRESH_S` (with a lifetime
of :data:`ALIVE_TTL_S`); the first ticker after a break of more than that lifetime starts
a new T. A tick older than T, less :data:`MISSED_SLACK_S` (the time a running ticker may
take to notice a tick), was missed; every later tick was some running worker's to fire, so
it is fired however late (a busy or slow worker's ticks are late, never missed), and all
workers judge alike, whenever each of them started. What happens to missed ticks is the
schedule's ``catch_up``:

* ``none``: no row; the schedule goes on with the next tick that is due.
* ``last`` (default): one row, for the newest missed tick; the older ones get no row.
* ``all``: a row for each missed tick, oldest first, :data:`MAX_TICKS_PER_PASS` per pass.

A row made for a missed tick says so in its log (``--- catch-up ---``).

**skip_if_running.** A tick whose schedule's previous row is still queued, scheduled or
running gets a row with status ``canceled`` and the log ``skipped: previous #N still
running``; it is never stacked behind the previous one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rqjobs.keys import SCHEDULES_ALIVE_SINCE_KEY

if TYPE_CHECKING:
    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime
    from rqjobs.schedules.spec import ScheduleSpec
    from rqjobs.store.records import TaskRecord
    from rqjobs.store.schedules import ScheduleStore

log = logging.getLogger("rqjobs.schedules")

#: a tick older than the start of the tickers' unbroken run minus this was missed
MISSED_SLACK_S = 2.0
#: every ticker refreshes the key this often, and it lives this long unrefreshed
ALIVE_REFRESH_S = 3.0
ALIVE_TTL_S = 15.0
# "the value, refreshed; or, after a break, now": one round trip, atomic between tickers
_ALIVE_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return v
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
#: at most this many ticks of one schedule are handled per pass (catch_up = "all" backlogs)
MAX_TICKS_PER_PASS = 100
#: after an error, a schedule is looked at again this soon
RETRY_AFTER_ERROR_S = 5.0


@dataclass(frozen=True)
class TickOutcome:
    """What one worker did about one tick (for its log)."""

    schedule: str
    tick: datetime
    #: created, skipped, taken, paused, passed (catch_up gave it no row), failed (enqueue)
    outcome: str
    task_id: int | None = None
    catch_up: bool = False

    def describe(self) -> str:
        when = self.tick.isoformat(timespec="seconds")
        late = " (catch-up of a missed tick)" if self.catch_up else ""
        if self.outcome == "created":
            return f"schedule {self.schedule}: tick {when} -> task {self.task_id}{late}"
        if self.outcome == "skipped":
            return f"schedule {self.schedule}: tick {when} skipped, previous task still running (row {self.task_id})"
        if self.outcome == "passed":
            return f"schedule {self.schedule}: missed ticks up to {when} get no row (catch_up)"
        if self.outcome == "failed":
            return f"schedule {self.schedule}: tick {when}: task {self.task_id} could not be enqueued"
        return f"schedule {self.schedule}: tick {when} {self.outcome}"


def check_schedules(settings: Settings) -> None:
    """Refuse schedules whose task or arguments the loaded task modules do not accept.

    Called once the task modules are imported (a worker's start, ``schedule`` commands):
    :class:`~rqjobs.exceptions.ConfigError` names the file, the schedule and the key.
    """
    from rqjobs.checks import plan_task
    from rqjobs.exceptions import ConfigError, InvalidInput
    from rqjobs.schedules.spec import check_tasks
    from rqjobs.tasks.registry import registered_tasks

    where = str(settings.config_path or "config")
    check_tasks(settings.schedules, where, registered_tasks())
    for spec in settings.schedules:
        try:
            plan_task(
                settings,
                spec.task,
                spec.args,
                dict(spec.kwargs),
                description=spec.describe(None),
                queue=spec.queue,
            )
        except InvalidInput as exc:
            raise ConfigError(
                f"{where}: [[schedule]] {spec.name!r}: args/kwargs/queue: {exc.message}"
            ) from None


def schedule_store(runtime: Runtime) -> ScheduleStore:
    from rqjobs.store.schedules import ScheduleStore

    return ScheduleStore(runtime.store.engine, retry_s=runtime.settings.db_retry_s)


def new_row_values(
    runtime: Runtime, spec: ScheduleSpec, tick: datetime | None, *, note: str | None = None
) -> dict[str, Any]:
    """The columns of a row for ``spec`` at ``tick`` (checked like any enqueue)."""
    from rqjobs.checks import plan_task
    from rqjobs.store.records import row_values

    prepared = plan_task(
        runtime.settings,
        spec.task,
        spec.args,
        dict(spec.kwargs),
        description=spec.describe(tick),
        queue=spec.queue,
    )
    values = row_values(**prepared.row_options())
    if note:
        values["log"] = note
    return values


def enqueue_claimed(runtime: Runtime, record: TaskRecord) -> bool:
    """Put a committed row's job in Redis; False (the row is then failed, with why) if Redis refused."""
    from rqjobs.api import submit_job
    from rqjobs.exceptions import EnqueueFailed

    try:
        submit_job(runtime, record)
    except EnqueueFailed as exc:
        log.warning("%s", exc.message)
        return False
    return True


class Ticker:
    """One worker's ticker: call :meth:`run_due` whenever :meth:`seconds_until_due` is 0."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.specs = [s for s in runtime.settings.schedules if s.enabled]
        #: schedule name -> monotonic time at which to look at it again
        self._due_at: dict[str, float] = {}
        #: when the tickers' unbroken run began (see SCHEDULES_ALIVE_SINCE_KEY), and when to refresh it
        self.alive_since: datetime | None = None
        self._refresh_at = 0.0
        self._store: ScheduleStore | None = None

    @property
    def active(self) -> bool:
        return bool(self.specs)

    @property
    def store(self) -> ScheduleStore:
        if self._store is None:
            self._store = schedule_store(self.runtime)
        return self._store

    def seconds_until_due(self) -> float | None:
        """How long until some schedule needs a look (None: no schedules)."""
        if not self.specs:
            return None
        now = time.monotonic()
        next_look = min(self._due_at.get(s.name, now) for s in self.specs)
        return max(0.0, min(next_look, self._refresh_at) - now)

    def refresh_alive(self) -> datetime:
        """Refresh the shared "tickers alive since" key; returns its time (a new one after a break)."""
        from datetime import timezone

        now_s = time.time()
        raw = self.runtime.redis.eval(
            _ALIVE_SCRIPT, 1, SCHEDULES_ALIVE_SINCE_KEY, repr(now_s), int(ALIVE_TTL_S * 1000)
        )
        self.alive_since = datetime.fromtimestamp(float(raw), timezone.utc)
        return self.alive_since

    def run_due(self) -> list[TickOutcome]:
        """Handle every schedule whose next tick has come; returns what happened."""
        from rqjobs.store.models import utcnow

        mono = time.monotonic()
        if mono >= self._refresh_at or self.alive_since is None:
            self._refresh_at = mono + ALIVE_REFRESH_S  # also after a failure: not in a tight loop
            self.refresh_alive()
        due = [s for s in self.specs if self._due_at.get(s.name, mono) <= mono]
        if not due:
            return []
        now = utcnow()
        states = self.store.states([s.name for s in due])
        outcomes: list[TickOutcome] = []
        for spec in due:
            try:
                done, more = self._run_schedule(spec, states.get(spec.name), now)
                outcomes += done
                wait_s = 0.0 if more else (spec.next_tick_after(now) - utcnow()).total_seconds()
            except Exception as exc:
                from rq.exceptions import StopRequested

                if isinstance(exc, StopRequested):
                    raise
                log.warning("schedule %s: %s: %s", spec.name, type(exc).__name__, exc)
                wait_s = RETRY_AFTER_ERROR_S
            self._due_at[spec.name] = time.monotonic() + max(0.0, wait_s)
        return outcomes

    def _run_schedule(self, spec: ScheduleSpec, state: Any, now: datetime) -> tuple[list[TickOutcome], bool]:
        """The ticks of one schedule up to ``now``; (outcomes, whether a backlog remains)."""
        if state is None:
            # first sight of this schedule anywhere: it starts with the next tick (the one
            # already passed is not fired, as with a new crontab line)
            state = self.store.ensure_state(spec.name, spec.tick_at_or_before(now))
        if state.paused:
            return [], False
        last = state.last_tick
        if last is None:
            last = spec.tick_at_or_before(now)
            if last is None:
                return [], False
            self.store.advance(spec.name, last)
        assert self.alive_since is not None
        missed_before = self.alive_since - timedelta(seconds=MISSED_SLACK_S)
        plan: list[tuple[datetime, bool]] = []  # (tick, is a catch-up)
        outcomes: list[TickOutcome] = []
        if spec.catch_up == "all":
            ticks = spec.ticks_between(last, now, MAX_TICKS_PER_PASS + 1)
            plan = [(t, t <= missed_before) for t in ticks]
        else:
            newest_missed = spec.tick_at_or_before(missed_before)
            if newest_missed is not None and newest_missed > last:
                if spec.catch_up == "last":
                    plan.append((newest_missed, True))
                else:
                    self.store.advance(spec.name, newest_missed)
                    outcomes.append(TickOutcome(spec.name, newest_missed, "passed", catch_up=True))
                last = newest_missed
            plan += [(t, False) for t in spec.ticks_between(last, now, MAX_TICKS_PER_PASS + 1)]
        more = len(plan) > MAX_TICKS_PER_PASS
        for tick, catch_up in plan[:MAX_TICKS_PER_PASS]:
            outcome = self._fire(spec, tick, catch_up)
            outcomes.append(outcome)
            if outcome.outcome == "paused":
                break
        return outcomes, more

    def _fire(self, spec: ScheduleSpec, tick: datetime, catch_up: bool) -> TickOutcome:
        note = None
        if catch_up:
            note = (
                f"--- catch-up of tick {tick.isoformat(timespec='seconds')} ---\n"
                f"the tick was missed while no worker ran (catch_up = {spec.catch_up})\n"
            )
        values = new_row_values(self.runtime, spec, tick, note=note)
        claim = self.store.claim_tick(spec.name, tick, values, skip_if_running=spec.skip_if_running)
        record = claim.record
        if claim.outcome != "created" or record is None:
            return TickOutcome(spec.name, tick, claim.outcome, record.id if record else None, catch_up)
        enqueued = enqueue_claimed(self.runtime, record)
        return TickOutcome(spec.name, tick, "created" if enqueued else "failed", record.id, catch_up)


class ScheduleTickerMixin:
    """Runs the :class:`Ticker` inside RQ's worker loop, in the worker's main thread.

    It wakes the worker in time for the next tick (the idle dequeue waits no longer, and
    the horse monitor looks every second while a job runs) and ticks between jobs and
    while a horse is watched. Errors are logged; the ticker never takes a worker down.
    Only with the scheduler on (``rqjobs worker --no-scheduler`` runs no ticker).
    """

    runtime: Runtime
    schedule_ticker: Ticker | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if any(s.enabled for s in self.runtime.settings.schedules):
            kwargs.setdefault("job_monitoring_interval", 1)  # tick on time while a job runs
        super().__init__(*args, **kwargs)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        if kwargs.get("with_scheduler") and self.schedule_ticker is None:
            ticker = Ticker(self.runtime)
            self.schedule_ticker = ticker if ticker.active else None
        return super().work(*args, **kwargs)  # type: ignore[misc]

    @property
    def should_run_maintenance_tasks(self) -> bool:
        ticker = self.schedule_ticker
        if ticker is not None and ticker.seconds_until_due() == 0:
            return True
        return bool(super().should_run_maintenance_tasks)  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()  # type: ignore[misc]
        self.tick_schedules()

    @property
    def dequeue_timeout(self) -> int:
        timeout = int(super().dequeue_timeout)  # type: ignore[misc]
        wait_s = self.schedule_ticker.seconds_until_due() if self.schedule_ticker else None
        return timeout if wait_s is None else max(1, min(timeout, math.ceil(wait_s)))

    def maintain_heartbeats(self, job: Any) -> None:
        super().maintain_heartbeats(job)  # type: ignore[misc]
        self.tick_schedules()

    def request_stop(self, signum: int, frame: Any) -> None:
        # RQ raises StopRequested from the signal handler when idle: inside a tick's claim that
        # would break off a COMMIT half-way. The first stop waits for the tick; a second
        # one goes through at once.
        if self._ticking and self._deferred_stop is None:
            self._deferred_stop = (signum, frame)
            log.info("stop requested; finishing the schedule tick first")
            return
        super().request_stop(signum, frame)  # type: ignore[misc]

    _ticking = False
    _deferred_stop: tuple[int, Any] | None = None

    def tick_schedules(self) -> None:
        ticker = self.schedule_ticker
        if ticker is None or ticker.seconds_until_due():
            return
        self._ticking = True
        try:
            outcomes = ticker.run_due()
        except Exception as exc:
            log.warning("schedules: %s: %s", type(exc).__name__, exc)
            outcomes = []
        finally:
            self._ticking = False
            deferred, self._deferred_stop = self._deferred_stop, None
        for outcome in outcomes:
            if outcome.outcome in ("created", "skipped", "passed", "failed"):
                log.info("%s", outcome.describe())
        if deferred is not None:
            self.request_stop(*deferred)
