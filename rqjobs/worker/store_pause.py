"""A worker whose task database fails takes no jobs until it answers again.

Without this, a worker whose database had gone (a server down, a frozen proxy, SQLite's
``-wal`` file deleted: "disk I/O error") took every queued job and failed it, each with a
truthful row but the queue burned through (issue 11). Now, before it forks a horse for a
job, the worker checks the database (:func:`rqjobs.store.probe.probe`, which opens a new
connection on SQLite as the horse would). On failure the job goes back to the head of its
queue unrun, the worker logs why and publishes ``store failing`` in
``rqjobs:worker-state:<host>:<pid>`` (through its liveness beacon, with the liveness TTL as
expiry), and waits, checking again with backoff, until the database answers. Then it
clears the state and goes on. A burst worker waits ``db_retry_s`` at most, then stops with
:class:`~rqjobs.exceptions.StoreFailing` (exit 1), the queue left as it was.

A database that fails after the check, while the horse starts, still fails that one job
(with the reason in the row's or RQ's record); the next job's check then pauses the worker.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from rqjobs.broker.job import task_id_of

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")

#: the worker state published while the task database fails
STORE_FAILING_STATE = "store failing"
#: the longest wait between two checks of a failing database (seconds)
MAX_CHECK_INTERVAL_S = 5.0


class StorePauseMixin:
    """Checks the task database before each job; pauses the worker while it fails."""

    runtime: Runtime
    beacon: Any
    connection: Any
    stop_signaled: bool
    _burst_mode: bool
    _stop_requested: bool

    def execute_job(self, job: Any, queue: Any) -> None:
        from rqjobs.store.probe import probe

        reason = probe(self.runtime.store.engine, task_id_of(job))
        if reason is None:
            super().execute_job(job, queue)  # type: ignore[misc]
            return
        from rqjobs.broker.rq_internals import give_back_dequeued

        give_back_dequeued(self.connection, queue, job.id, at_front=True)
        # a concurrency slot taken for this job (rqjobs.worker.flow) goes back now, not
        # after the wait: the job is in its queue again, and another worker may run it
        give_back_slots = getattr(self, "_give_back_slots", None)
        if give_back_slots is not None:
            give_back_slots()
        log.warning(
            "the task database is failing (%s): job %s goes back to its queue unrun; "
            "this worker takes no jobs until the database answers",
            reason,
            job.id,
        )
        self.wait_for_store(reason)

    def wait_for_store(self, reason: str | None) -> None:
        """Wait, checking with backoff, until the task database answers (or a stop request)."""
        from rqjobs.exceptions import StoreFailing
        from rqjobs.store.probe import probe, release_pool

        engine = self.runtime.store.engine
        settings = self.runtime.settings
        if self.beacon is not None:
            self.beacon.set_state(STORE_FAILING_STATE)
        started = time.monotonic()
        delay_s = 0.25
        try:
            while reason is not None:
                self.note_progress()  # type: ignore[attr-defined]
                if self.stop_signaled or getattr(self, "_stop_requested", False):
                    return
                waited_s = time.monotonic() - started
                if self._burst_mode and waited_s >= settings.db_retry_s:
                    raise StoreFailing(
                        f"the task database is failing ({reason}); the burst worker waited "
                        f"{waited_s:.0f} s for it and stops, leaving the queue as it was"
                    )
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, MAX_CHECK_INTERVAL_S)
                self.heartbeat()  # type: ignore[attr-defined]  # RQ's worker key stays alive
                release_pool(engine)  # SQLite heals once no connection holds a deleted file
                reason = probe(engine)
            log.warning(
                "the task database answers again after %.0f s; taking jobs again", time.monotonic() - started
            )
        finally:
            if self.beacon is not None:
                self.beacon.set_state(None)
