"""Liveness, periodic reconcile and Redis-outage tolerance, mixed into the RQ worker class.

RQ's worker quits its loop on most Redis errors, and while a job runs a failed heartbeat
makes it abandon the horse. The mixin notes such errors instead (the supervisor in
:mod:`rqjobs.worker.supervisor` starts the loop again once Redis answers, after settling the
job that was in flight), keeps the liveness key (:mod:`rqjobs.worker.liveness`), stamps the
main loop's progress for it, and runs the cluster's periodic reconcile pass in a thread of its
own (:mod:`rqjobs.worker.reconciler`), so a stalled database never stalls dequeuing.
"""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rqjobs import defaults
from rqjobs.broker.connection import is_broker_error
from rqjobs.broker.job import task_id_of
from rqjobs.hostpid import host_pid
from rqjobs.worker.liveness import LivenessBeacon
from rqjobs.worker.process import kill_children_with_this_process, new_worker_name, signal_description
from rqjobs.worker.reconciler import Reconciler

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")


_next_revival_s = 0.0


def revive_embedded_redis(runtime: Runtime) -> None:
    """Start the embedded redis-server again if it is gone (no ``redis_url`` configured).

    ``rqjobs redis stop --force``, a crash or the OOM killer may end it under a running
    worker, which would otherwise wait forever for a server nobody starts. At most one
    try every few seconds; the start lock in :func:`rqjobs.broker.embedded.ensure_running`
    makes concurrent workers start one server between them.
    """
    global _next_revival_s
    settings = runtime.settings
    if not settings.embedded_redis or time.monotonic() < _next_revival_s:
        return
    _next_revival_s = time.monotonic() + defaults.REDIS_RECONNECT_MAX_WAIT_S
    from rqjobs.broker import embedded

    socket_path = embedded.socket_path_for(settings.data_dir)
    if embedded.ping(socket_path):
        return
    try:
        embedded.ensure_running(settings.data_dir, settings.redis_server)
    except Exception as exc:
        log.warning("the embedded redis-server is gone and could not be started again: %s", exc)
        return
    log.warning("the embedded redis-server was gone; started it again at unix://%s", socket_path)


class WorkerHealthMixin:
    """Liveness, periodic reconcile and outage tolerance for :class:`rqjobs.worker.rq_worker.RqjobsWorker`.

    Everything here runs in the worker (parent) process; the work horse only inherits it.
    Reconcile runs in its own thread (see :mod:`rqjobs.worker.reconciler` for why a fork
    stays safe); the main loop waits for it only at a burst worker's start.
    """

    #: RQ backs off up to this long between reconnect attempts (RQ's default: 60 s)
    max_connection_wait_time = defaults.REDIS_RECONNECT_MAX_WAIT_S

    runtime: Runtime
    # provided by rq.worker.Worker
    name: str
    scheduler: Any
    last_cleaned_at: Any
    _stop_requested: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.label = host_pid()
        kwargs.setdefault("name", new_worker_name(self.label))
        # the horse is watched this often while a job runs: often enough that the main
        # loop's progress stamp stays well within the liveness TTL
        kwargs.setdefault("job_monitoring_interval", self._loop_tick_s())
        self.beacon: LivenessBeacon | None = None
        self.reconciler: Reconciler | None = None
        self._own_beacon = False
        self._next_reconcile_s = 0.0
        self._burst_mode = False
        #: the worker loop ended on a Redis error: the supervisor starts it again
        self.broker_lost = False
        #: the loop ended the normal way (drained in burst, or suspended in burst)
        self.drained = False
        #: the job whose horse was being watched when the loop ended abnormally
        self.inflight_job: Any = None
        #: wait status of the last work horse reaped (None while it runs)
        self.last_horse_status: int | None = None
        #: SIGINT/SIGTERM asked the worker to stop
        self.stop_signaled = False
        super().__init__(*args, **kwargs)

    def _loop_tick_s(self) -> int:
        """The longest the main loop waits in one call (dequeue, horse watch): a third of
        the liveness TTL, so a loop that moves always has a fresh progress stamp."""
        return max(1, min(30, math.ceil(self.runtime.settings.worker_liveness_ttl_s / 3)))

    def note_progress(self) -> None:
        """The main loop moves: the liveness beacon may go on vouching for this worker."""
        if self.beacon is not None:
            self.beacon.note_progress()

    # -- lifecycle ---------------------------------------------------------------------------

    def work(self, *args: Any, **kwargs: Any) -> bool:
        self._burst_mode = bool(kwargs.get("burst", args[0] if args else False))
        self.drained = self.broker_lost = False  # about this loop only (work() may run again)
        return super().work(*args, **kwargs)  # type: ignore[misc]

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        kill_children_with_this_process()
        if self.beacon is None:
            self.beacon = LivenessBeacon(self.runtime.settings, self.label, self.name)
            self._own_beacon = True
            self.beacon.start()
        else:
            self.beacon.worker_name = self.name
        self.note_progress()

    def teardown(self) -> None:
        if getattr(self, "is_horse", False):
            return super().teardown()  # type: ignore[misc]
        if self.reconciler is not None:
            self.reconciler.stop()
            self.reconciler = None
        try:
            super().teardown()  # type: ignore[misc]
        except Exception as exc:
            if not is_broker_error(exc):
                raise
            self.broker_lost = True
            log.warning("could not register the worker's exit in Redis (%s: %s)", type(exc).__name__, exc)
        finally:
            if self.beacon is not None and self._own_beacon:
                self.beacon.stop()
                self.beacon = None

    def request_stop(self, signum: int, frame: Any) -> None:
        # RQ raises StopRequested from here when idle and sets no flag: remember the request,
        # so the supervisor does not take the end of the loop for a failure and start it again
        self.stop_signaled = True
        super().request_stop(signum, frame)  # type: ignore[misc]

    def unsubscribe(self) -> None:
        # RQ sends UNSUBSCRIBE, then clears the pubsub thread's run flag: when the reply wins
        # that race the thread waits 60 s more for a message and the exit stalls on a 1 s join.
        # Clearing the flag first lets the reply end the thread at once.
        thread = getattr(self, "pubsub_thread", None)
        if thread is not None:
            thread.stop()
        super().unsubscribe()  # type: ignore[misc]

    # -- noticing outages --------------------------------------------------------------------

    def _note_outage(self, exc: BaseException) -> None:
        if not self.broker_lost:
            log.warning("lost Redis (%s: %s); the running task goes on", type(exc).__name__, exc)
        self.broker_lost = True

    def check_for_suspension(self, burst: bool) -> None:
        from rq.exceptions import StopRequested

        self.note_progress()
        try:
            super().check_for_suspension(burst)  # type: ignore[misc]
        except StopRequested:
            self.drained = True
            raise
        except Exception as exc:
            if is_broker_error(exc):
                self.broker_lost = True
            raise

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        self.note_progress()
        try:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
        except Exception as exc:
            if is_broker_error(exc):
                self.broker_lost = True
            raise
        if result is None:
            self.drained = True
        return result

    def fork_work_horse(self, job: Any, queue: Any) -> None:
        # a SQLite reconcile pass in the other thread holds the fork gate (see
        # rqjobs.worker.reconciler); waiting for it is progress, not a stuck loop
        from rqjobs.store.engine import forking

        with forking(self.note_progress):
            super().fork_work_horse(job, queue)  # type: ignore[misc]

    def wait_for_horse(self) -> Any:
        pid, status, rusage = super().wait_for_horse()  # type: ignore[misc]
        if pid:
            self.last_horse_status = status
        return pid, status, rusage

    def execute_job(self, job: Any, queue: Any) -> None:
        self.note_progress()
        self.inflight_job = job
        self.last_horse_status = None
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
        except Exception as exc:
            if is_broker_error(exc):
                self.broker_lost = True
            raise
        self.inflight_job = None

    # while a horse runs, a failed Redis write must not make the worker abandon it
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if not getattr(self, "is_horse", False):
            self.note_progress()  # RQ's dequeue loop beats before each wait
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        if not getattr(self, "horse_pid", 0):
            try:
                return super().heartbeat(timeout)  # type: ignore[misc]
            except Exception as exc:
                # RQ's dequeue loop beats first and retries on a connection error: the
                # place to notice that the embedded server is gone
                if is_broker_error(exc) and not getattr(self, "is_horse", False):
                    revive_embedded_redis(self.runtime)
                raise
        try:
            super().heartbeat(timeout)  # type: ignore[misc]
        except Exception as exc:
            if not is_broker_error(exc):
                raise
            self._note_outage(exc)

    def set_current_job_working_time(self, current_job_working_time: float, pipeline: Any = None) -> None:
        if pipeline is not None or not getattr(self, "horse_pid", 0):
            return super().set_current_job_working_time(current_job_working_time, pipeline)  # type: ignore[misc]
        try:
            super().set_current_job_working_time(current_job_working_time)  # type: ignore[misc]
        except Exception as exc:
            if not is_broker_error(exc):
                raise
            self._note_outage(exc)

    def maintain_heartbeats(self, job: Any) -> None:
        self.note_progress()
        try:
            super().maintain_heartbeats(job)  # type: ignore[misc]
        except Exception as exc:
            if not is_broker_error(exc):
                raise
            self._note_outage(exc)
            return
        self.periodic_reconcile()

    # -- periodic reconcile ------------------------------------------------------------------

    @property
    def dequeue_timeout(self) -> int:
        # wake up often enough to stamp the loop's progress (RQ blocks ~7 minutes by default)
        rq_timeout = super().dequeue_timeout  # type: ignore[misc]
        return max(1, min(rq_timeout, self._loop_tick_s()))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return bool(super().should_run_maintenance_tasks) or time.monotonic() >= self._next_reconcile_s  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        self.note_progress()
        if super().should_run_maintenance_tasks:  # type: ignore[misc]
            super().run_maintenance_tasks()  # type: ignore[misc]
        else:
            self._revive_scheduler()
        # a burst worker's first pass must re-queue what it can before the burst finds the
        # queue empty; a long-running worker never waits for a pass
        self.periodic_reconcile(wait=self._burst_mode)

    def _revive_scheduler(self) -> None:
        """Start the scheduler again if its process died (RQ checks every 10 minutes only)."""
        scheduler = self.scheduler
        if self._burst_mode or scheduler is None or not self.last_cleaned_at:
            return
        if self.stop_signaled or getattr(self, "_stop_requested", False):
            return  # stopping: a scheduler started now would outlive the loop's teardown
        process = getattr(scheduler, "_process", None)
        if process is None or not process.is_alive():
            from rq.exceptions import StopRequested

            try:
                scheduler.acquire_locks(auto_start=True)
            except StopRequested:
                raise
            except Exception as exc:
                log.debug("scheduler not restarted: %s", exc)

    def periodic_reconcile(self, *, wait: bool = False) -> None:
        """One reconcile pass for the whole cluster per ``reconcile_interval_s``, in the
        :class:`~rqjobs.worker.reconciler.Reconciler` thread.

        Every worker tries; a Redis key with that lifetime picks one of them. With ``wait``
        the main loop waits for a pass, at most about the longest a database call can take.
        """
        settings = self.runtime.settings
        if self.reconciler is None or not self.reconciler.alive:
            self.reconciler = Reconciler(self.runtime, settings.reconcile_interval_s)
            self.reconciler.start()
        now = time.monotonic()
        if now < self._next_reconcile_s:
            return
        # also paces run_maintenance_tasks (should_run_maintenance_tasks reads it)
        self._next_reconcile_s = now + settings.reconcile_interval_s
        if not wait:
            return
        bound_s = settings.db_retry_s + defaults.DB_CONNECT_TIMEOUT_S + 2 * settings.redis_socket_timeout_s
        self.reconciler.run_now(bound_s, self.note_progress)
        self.note_progress()

    # -- after the loop ended abnormally ------------------------------------------------------

    def settle_inflight(self) -> None:
        """Record the job that was running when the loop broke off (Redis must answer again).

        The horse is waited for (it is killed once past its timeout + 60 s, as RQ would);
        then a row still ``running`` under this worker is failed or re-queued like a run
        whose worker died, and RQ's copy of the job is released to match.
        """
        job = self.inflight_job
        self.inflight_job = None
        if job is None:
            return
        horse_pid = getattr(self, "horse_pid", 0)
        ended_at = None
        if horse_pid:
            limit_s = (job.timeout if job.timeout and job.timeout > 0 else defaults.DEFAULT_TIMEOUT_S) + 60
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                self.note_progress()
                try:
                    pid, _status = os.waitpid(horse_pid, os.WNOHANG)
                except ChildProcessError:
                    break  # already reaped
                if pid:
                    self.last_horse_status = _status
                    break
                time.sleep(0.2)
            else:
                self.kill_horse()  # type: ignore[attr-defined]
                self.wait_for_horse()  # type: ignore[attr-defined]
            self._horse_pid = 0
            ended_at = datetime.now(timezone.utc)  # the row's end: not when Redis came back
        from rqjobs.reconcile import release_run

        status = self.last_horse_status
        ended = "its task process " + (
            signal_description(status) if status is not None else "was not seen to end"
        )
        change = release_run(
            self.runtime,
            task_id=task_id_of(job),
            job_id=job.id,
            worker_label=self.label,
            worker_name=self.name,
            why=ended,
            ended_at=ended_at,
        )
        if change is not None:
            log.warning("after the Redis outage: %s", change.describe())
