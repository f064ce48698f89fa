"""Paused queues and concurrency limits in the worker's dequeue path (issue 14).

:class:`QueueFlowMixin` wraps RQ's ``dequeue_job_and_maintain_ttl`` and decides, before a
work horse exists, whether the job it got may start:

* **Paused queues.** The paused set is read from SQL at most once per
  :data:`PAUSE_REFRESH_S` (a primary-key scan of a tiny table); when a read fails the last
  known set stays. Paused queues are left out of the BLPOP, and while any queue is paused
  the BLPOP lasts at most :data:`PAUSE_REFRESH_S`, so a pause or a resume takes effect
  within about a second. While no queue is paused the worker blocks as long as usual, and
  a job that arrives from a queue paused meanwhile is checked against the paused set (read
  again when over a second old) and put back at the front of its queue, never started. When every queue of the worker is
  paused it idles: it heartbeats, runs maintenance (reconcile, schedule ticks) and answers
  signals, but takes nothing. A **burst** worker treats a paused queue as empty: it exits
  once its unpaused queues are drained (the paused jobs wait for a worker after the resume).
* **Concurrency limits.** A job whose task has a limit (:func:`rqjobs.flow.concurrency_limit`)
  takes a slot (:mod:`rqjobs.broker.slots`) before it starts. When every slot is held it
  goes back to the *end* of its queue (its row stays ``queued``, no attempt counts; the jobs
  behind it get their turn) and this worker backs off, growing from
  :data:`FULL_BACKOFF_MIN_S` to :data:`FULL_BACKOFF_MAX_S` while it keeps meeting full
  limits, so no worker spins. The slot is given back once the horse has ended, whatever the
  ending. While it runs the liveness thread extends it; a killed worker's slot lapses within
  ``worker_liveness_ttl_s``.

The mixin sits between :class:`rqjobs.worker.health.WorkerHealthMixin` and RQ's ``Worker``
in the worker's bases, so the health mixin's outage handling wraps all of this, and "the
dequeue returned nothing" still means drained (burst) to it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from rqjobs.broker.slots import Slot, acquire, refresh, release, slot_member

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")

#: the paused set is read from SQL at most this often, and a BLPOP lasts at most this long
#: while a queue is paused: a pause or resume takes effect within about this long
PAUSE_REFRESH_S = 1.0
#: a worker that met a full limit waits this long before its next dequeue, doubling while it
#: keeps meeting full limits, up to the max
FULL_BACKOFF_MIN_S = 0.05
FULL_BACKOFF_MAX_S = 1.0

#: the slots this process holds now. A process runs one job at a time, but the slots
#: outlive one worker loop: after a Redis outage the supervisor settles the horse of the
#: old loop and starts a new one, which gives back what the old one left. Replaced, never
#: mutated, so the liveness thread reads a consistent tuple without a lock.
_held: tuple[Slot, ...] = ()
#: how long a slot lives unrefreshed: the worker's ``worker_liveness_ttl_s``
_ttl_s = 15.0


def held_slots() -> tuple[Slot, ...]:
    """The concurrency-limit slots this process holds (empty when not running a limited job)."""
    return _held


def _set_held(slots: tuple[Slot, ...]) -> None:
    global _held
    _held = slots


class QueueFlowMixin:
    """Pauses and concurrency limits for :class:`rqjobs.worker.rq_worker.RqjobsWorker`."""

    runtime: Runtime
    # provided by rq.worker.Worker and WorkerHealthMixin
    name: str
    connection: Any
    beacon: Any
    _ordered_queues: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._paused: frozenset[str] = frozenset()
        self._paused_read_at = float("-inf")
        self._paused_read_failing = False
        self._paused_shown: frozenset[str] = frozenset()
        self._full_backoff_s = 0.0
        self._idle_redis_failing = False
        super().__init__(*args, **kwargs)

    # -- the paused set ------------------------------------------------------------------

    def paused_now(self) -> frozenset[str]:
        """The paused queues, read from SQL at most once per :data:`PAUSE_REFRESH_S`."""
        now = time.monotonic()
        if now - self._paused_read_at < PAUSE_REFRESH_S:
            return self._paused
        self._paused_read_at = now
        from rqjobs.flow import queue_store

        try:
            # no retry budget: the loop asks again within a second anyway
            self._paused = frozenset(p.queue for p in queue_store(self.runtime, retry_s=0).paused())
            if self._paused_read_failing:
                log.info("paused queues read again from the database")
            self._paused_read_failing = False
        except Exception as exc:
            if not self._paused_read_failing:
                log.warning(
                    "cannot read the paused queues (%s: %s); keeping the last known: %s",
                    type(exc).__name__,
                    exc,
                    ", ".join(sorted(self._paused)) or "none",
                )
            self._paused_read_failing = True
        mine = self._paused & {q.name for q in self._ordered_queues}
        if mine != self._paused_shown:
            self._paused_shown = mine
            if mine:
                log.info("Worker %s: paused queues skipped: %s", self.name, ", ".join(sorted(mine)))
            else:
                log.info("Worker %s: no paused queue; taking jobs from all its queues", self.name)
        return self._paused

    # -- RQ's dequeue ----------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        idle_since = time.monotonic()
        while True:
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None
            paused = self.paused_now() & {q.name for q in self._ordered_queues}
            if not paused:
                result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
                if result is None:
                    return None
            else:
                active = [q for q in self._ordered_queues if q.name not in paused]
                if not active:
                    if timeout is None:
                        return None  # burst: a paused queue counts as empty
                    self._idle_while_paused(paused)
                    continue
                result = self._dequeue_from(active, timeout)
                if result is None:
                    if timeout is None:
                        return None  # burst: the unpaused queues are drained
                    continue  # the short wait ended: look at the paused set again
            job, queue = result
            if queue.name in self.paused_now():
                # paused while this worker was blocked on the queue: not started, order kept
                self._give_back(job, queue, at_front=True, why=f"queue {queue.name} is paused")
                continue
            if not self._take_slot(job):
                self._give_back(job, queue, at_front=False, why="its task's concurrency limit is full")
                self._back_off()
                continue
            self._full_backoff_s = 0.0
            return result

    def _dequeue_from(self, active: list[Any], timeout: int | None) -> Any:
        """RQ's dequeue over the unpaused queues only, returning within about a second."""
        short = None if timeout is None else max(1, min(int(timeout), int(PAUSE_REFRESH_S)))
        saved = self._ordered_queues
        self._ordered_queues = active
        try:
            # RQ loops on its BLPOP timeout unless given an idle limit: one wait, then back here
            return super().dequeue_job_and_maintain_ttl(short, short)  # type: ignore[misc]
        finally:
            self._ordered_queues = saved

    def _idle_while_paused(self, paused: frozenset[str]) -> None:
        """Every queue of this worker is paused: stay alive and take nothing for a while."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from rq.worker import WorkerStatus

        self.procline("Paused: " + ",".join(sorted(paused)))  # type: ignore[attr-defined]
        try:
            self.set_state(WorkerStatus.IDLE)  # type: ignore[attr-defined]
            self.heartbeat()  # type: ignore[attr-defined]
            if self.should_run_maintenance_tasks:  # type: ignore[attr-defined]
                self.run_maintenance_tasks()  # type: ignore[attr-defined]
            if self._idle_redis_failing:
                log.info("Worker %s: Redis answers again", self.name)
            self._idle_redis_failing = False
        except RedisConnectionError as exc:
            # as RQ's own wait does: Redis may come back; the paused set is in SQL anyway
            if not self._idle_redis_failing:
                log.warning("Worker %s: cannot reach Redis while paused (%s); retrying", self.name, exc)
            self._idle_redis_failing = True
        # a signal here raises StopRequested out of the sleep, as in RQ's own BLPOP wait
        wait_s = min(PAUSE_REFRESH_S, float(self.dequeue_timeout))  # type: ignore[attr-defined]
        time.sleep(max(0.05, self._paused_read_at + wait_s - time.monotonic()))

    def _give_back(self, job: Any, queue: Any, *, at_front: bool, why: str) -> None:
        from rqjobs.broker.rq_internals import give_back_dequeued

        pushed = give_back_dequeued(self.connection, queue, job.id, at_front=at_front)
        if pushed:
            log.debug("Worker %s: job %s left in queue %s: %s", self.name, job.id, queue.name, why)

    def _back_off(self) -> None:
        self._full_backoff_s = min(FULL_BACKOFF_MAX_S, max(FULL_BACKOFF_MIN_S, self._full_backoff_s * 2))
        self.heartbeat()  # type: ignore[attr-defined]
        time.sleep(self._full_backoff_s)

    # -- concurrency slots -----------------------------------------------------------------

    def _take_slot(self, job: Any) -> bool:
        """True when the job may start: its task has no limit, or a slot was free."""
        from rqjobs.flow import concurrency_limit
        from rqjobs.tasks.registry import spec_for_path

        spec = spec_for_path(job.func_name)
        limit = concurrency_limit(spec, self.runtime.settings) if spec is not None else None
        if limit is None:
            return True
        global _ttl_s
        _ttl_s = ttl_s = self.runtime.settings.worker_liveness_ttl_s
        beacon = self.beacon
        if beacon is not None and _refresh_held not in beacon.hooks:
            beacon.hooks.append(_refresh_held)
        slot = acquire(self.connection, spec.name, slot_member(job.id, self.name), limit, ttl_s)  # type: ignore[union-attr]
        if slot is None:
            return False
        _set_held((*_held, slot))
        return True

    def _give_back_slots(self) -> None:
        slots = _held
        if not slots:
            return
        try:
            release(self.connection, slots)
        except Exception as exc:  # Redis gone: the slots lapse on their own, unrefreshed
            log.warning("could not give back a concurrency slot (%s: %s); it lapses", type(exc).__name__, exc)
        _set_held(())

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        # a previous loop of this process ended with a slot held: the supervisor has settled
        # its horse before starting this loop, so the slot is free to give back
        self._give_back_slots()

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
        except SystemExit:  # a cold shutdown: RQ killed the horse
            self._give_back_slots()
            raise
        # (any other error ends the loop with the horse perhaps still running: the slot
        # stays held, refreshed, until the next loop starts after the horse was settled)
        self._give_back_slots()


def _refresh_held(redis: Redis) -> None:
    """The liveness beacon's hook: extend the slots this process holds (its own connection)."""
    slots = _held
    if slots:
        refresh(redis, slots, _ttl_s)


__all__ = ["FULL_BACKOFF_MAX_S", "PAUSE_REFRESH_S", "QueueFlowMixin", "held_slots"]
