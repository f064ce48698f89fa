"""Worker health: liveness in Redis, horses that die with their worker, riding out Redis outages.

RQ notices a dead worker only when its heartbeat expires (~90 s while a job runs) and then
only in the maintenance pass that runs every 10 minutes; until then the task row would say
``running`` for a job nobody runs. So each rqjobs worker keeps a short-lived key of its own:

* ``rqjobs:worker:<host>:<pid>`` (the row's ``worker`` column), refreshed every third of
  ``worker_liveness_ttl_s`` by a daemon thread that uses its own Redis connection and does
  nothing else, so it never holds a lock the forked work horse could need. Reconcile
  (:mod:`rqjobs.reconcile`) treats a worker as dead when its key is gone and, on the same
  machine, its process is gone too.
* ``rqjobs:redis-since``: when this Redis first saw an rqjobs worker. With the server's
  uptime it tells reconcile whether a missing key means anything: right after Redis
  restarted or lost its data, every key is missing and no worker is presumed dead.

A work horse calls ``os.setpgrp()``, so killing the worker's process group leaves it running
a job that reconcile is about to re-queue. On Linux every process the worker forks (horse,
scheduler) asks the kernel for SIGKILL when the worker dies (``PR_SET_PDEATHSIG``).

RQ's worker quits its loop on most Redis errors. :func:`run_supervised` starts it again once
Redis answers, after settling the job that was in flight, so ``rqjobs worker`` survives a
Redis restart; while a job runs, a failed heartbeat no longer makes the worker abandon its
horse.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from rqjobs import defaults

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")

LIVENESS_KEY_PREFIX = "rqjobs:worker:"
REDIS_SINCE_KEY = "rqjobs:redis-since"

# "set the marker to the server's clock unless it exists; return its value": one round trip,
# and the server's clock, so hosts with skewed clocks agree on its age
_MARK_SCRIPT = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1], 'NX')
return {redis.call('GET', KEYS[1]), t[1]}
"""


def liveness_key(label: str) -> str:
    return LIVENESS_KEY_PREFIX + label


def process_label() -> str:
    """``host:pid`` of this process: what the ``worker`` column says for jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def new_worker_name(label: str) -> str:
    """An RQ worker name that names its process: ``host:pid:<8 hex>``.

    RQ stores the name in each job it starts (``job.worker_name``), so reconcile can tell
    which process started a job without any other bookkeeping.
    """
    return f"{label}:{uuid4().hex[:8]}"


def label_of_worker_name(name: str | None) -> str | None:
    """The ``host:pid`` part of a name made by :func:`new_worker_name` (None for others)."""
    if not name or name.count(":") < 2:
        return None
    label = name.rsplit(":", 1)[0]
    host, _, pid = label.rpartition(":")
    return label if host and pid.isdigit() else None


# -- is a worker alive? --------------------------------------------------------------------


def _boot_time_s() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def local_process_alive(pid: int, started_before: datetime | None = None) -> bool:
    """Does process ``pid`` exist on this machine (and is it the same one as back then)?

    A zombie counts as dead: a SIGKILLed worker whose parent has not reaped it yet is gone.
    With ``started_before``, a process that started later is a reused pid, not the worker.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs here: existence is all we can tell
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):
        return False
    if started_before is not None and len(fields) > 19:
        boot = _boot_time_s()
        if boot is not None:
            started_at = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
            # one second of slack for clock ticks and clock adjustments
            if started_at > started_before.timestamp() + 1.0:
                return False
    return True


class LivenessView:
    """Answers "is the worker ``host:pid`` alive?" for one reconcile pass.

    A worker is dead when its liveness key is missing and, when it ran on this machine,
    its process is gone too. A missing key only counts once Redis has been up, with its
    data, for at least ``worker_liveness_ttl_s`` (else every key is missing after a
    restart and every worker would look dead).
    """

    def __init__(self, redis: Redis, settings: Settings, *, write_marker: bool = True) -> None:
        self.redis = redis
        self.ttl_s = settings.worker_liveness_ttl_s
        self.hostname = socket.gethostname()
        self.redis_now_s, self.trusted = self._trust_missing_keys(write_marker)
        self._names: dict[str, str | None] = {}

    def _trust_missing_keys(self, write_marker: bool) -> tuple[float, bool]:
        uptime_s = float(self.redis.info("server").get("uptime_in_seconds", 0))
        if write_marker:
            since, now_s = self.redis.eval(_MARK_SCRIPT, 1, REDIS_SINCE_KEY)
            since_s, now_f = float(since), float(now_s)
        else:
            seconds, _micro = self.redis.time()
            now_f = float(seconds)
            raw = self.redis.get(REDIS_SINCE_KEY)
            since_s = float(raw) if raw is not None else now_f
        return now_f, uptime_s >= self.ttl_s and now_f - since_s >= self.ttl_s

    def current_name(self, label: str) -> str | None:
        """The RQ worker name the process ``label`` runs now (its liveness key's value)."""
        if label not in self._names:
            raw = self.redis.get(liveness_key(label))
            self._names[label] = raw.decode() if isinstance(raw, bytes) else raw
        return self._names[label]

    def key_present(self, label: str) -> bool:
        return self.current_name(label) is not None

    def run_gone_reason(self, worker_name: str | None, started_before: datetime | None = None) -> str | None:
        """Why the worker loop ``worker_name`` (``host:pid:id``) is over, or None if it may run.

        Over when its process is dead, or when that process has since started a new loop
        (after a Redis outage): one process runs one loop at a time.
        """
        label = label_of_worker_name(worker_name)
        if label is None:
            return None
        why = self.dead_reason(label, started_before)
        if why is not None:
            return why
        current = self.current_name(label)
        if current is not None and current != worker_name:
            return f"the worker loop {worker_name} has ended; its process now runs {current}"
        return None

    def dead_reason(self, label: str | None, started_before: datetime | None = None) -> str | None:
        """Why the worker ``label`` counts as dead, or None while it may be alive."""
        if not label:
            return None
        host, _, pid_text = label.rpartition(":")
        if not host or not pid_text.isdigit():
            return None
        if self.key_present(label) or not self.trusted:
            return None
        if host == self.hostname:
            if local_process_alive(int(pid_text), started_before):
                return None
            return f"its process {pid_text} on this machine no longer exists: killed, or it crashed"
        return (
            f"it has not refreshed its liveness key in Redis for over {self.ttl_s:g} s: "
            "its machine is gone, or cut off from Redis"
        )


# -- the beacon ----------------------------------------------------------------------------


class LivenessBeacon:
    """A daemon thread that keeps ``rqjobs:worker:<label>`` alive while this process lives.

    It has its own Redis connection and takes no lock the main thread uses, so a fork in
    the main thread (the work horse) cannot inherit a lock held by it.
    """

    def __init__(self, settings: Settings, label: str, worker_name: str) -> None:
        self.settings = settings
        self.label = label
        self.worker_name = worker_name
        self.ttl_s = settings.worker_liveness_ttl_s
        self.interval_s = self.ttl_s / 3
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Redis | None = None

    def beat(self) -> None:
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        pipe.set(liveness_key(self.label), self.worker_name, px=max(1, int(self.ttl_s * 1000)))
        pipe.eval(_MARK_SCRIPT, 1, REDIS_SINCE_KEY)
        pipe.execute()

    def start(self) -> None:
        """Beat once now (so the key exists before any job starts), then in the background."""
        from rqjobs.broker.connection import connect

        self._client = connect(self.settings, start_embedded=False)
        try:
            self.beat()
        except Exception as exc:  # Redis down: the thread keeps trying
            log.warning("liveness key not written yet (%s: %s); retrying", type(exc).__name__, exc)
        self._thread = threading.Thread(target=self._run, name="rqjobs-liveness", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(min(self.interval_s, 1.0) if failing else self.interval_s):
            try:
                self.beat()
                if failing:
                    log.info("liveness key written again")
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("cannot refresh the liveness key (%s: %s)", type(exc).__name__, exc)
                failing = True

    def stop(self) -> None:
        """Stop beating and delete the key: a worker that exits cleanly is gone at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._client is not None:
            try:
                self._client.delete(liveness_key(self.label))
            except Exception:
                pass  # it expires on its own
            self._client.close()
            self._client = None


# -- horses die with their worker ------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
_worker_pid: int | None = None
_forking: tuple[int, bool] | None = None
_fork_hooks_installed = False


def _load_prctl() -> Any:
    """prctl(2) from libc, resolved in the parent: a child must not call dlopen after fork."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.prctl
            fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            fn.restype = ctypes.c_int
            _prctl = fn
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only).

    If the parent is already gone (it died between the fork and this call), act now.
    """
    prctl = _load_prctl()
    if prctl is None or prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True


def _before_fork() -> None:
    global _forking
    _forking = (os.getpid(), threading.current_thread() is threading.main_thread())


def _after_fork_in_child() -> None:
    # only children of the worker process itself, forked by its main thread (PDEATHSIG is
    # tied to the forking thread): the work horse and the scheduler
    if _forking is not None and _worker_pid is not None:
        parent, from_main = _forking
        if parent == _worker_pid and from_main:
            die_with_parent(signal.SIGKILL, parent)


def kill_children_with_this_process() -> None:
    """From now on, every process this one forks dies when this one dies (Linux)."""
    global _worker_pid, _fork_hooks_installed
    if _load_prctl() is None:
        return
    _worker_pid = os.getpid()
    if not _fork_hooks_installed:
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _fork_hooks_installed = True


# -- the worker mixin ------------------------------------------------------------------------


def is_broker_error(exc: BaseException) -> bool:
    """A Redis connection problem (server down, restarted, unreachable, too slow)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError))


class WorkerHealthMixin:
    """Liveness, periodic reconcile and outage tolerance for :class:`rqjobs.worker.RqjobsWorker`.

    Everything here runs in the worker (parent) process; the work horse only inherits it.
    Reconcile runs in the main thread between jobs and while the horse is watched, never in
    a thread, so no fork can happen while it holds a database or Redis connection.
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
        self.label = process_label()
        interval_s = self.runtime.settings.reconcile_interval_s
        kwargs.setdefault("name", new_worker_name(self.label))
        # the horse is watched (and reconcile may run) this often while a job runs
        kwargs.setdefault("job_monitoring_interval", max(1, min(30, math.ceil(interval_s))))
        self.beacon: LivenessBeacon | None = None
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

    def teardown(self) -> None:
        if getattr(self, "is_horse", False):
            return super().teardown()  # type: ignore[misc]
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
        try:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
        except Exception as exc:
            if is_broker_error(exc):
                self.broker_lost = True
            raise
        if result is None:
            self.drained = True
        return result

    def wait_for_horse(self) -> Any:
        pid, status, rusage = super().wait_for_horse()  # type: ignore[misc]
        if pid:
            self.last_horse_status = status
        return pid, status, rusage

    def execute_job(self, job: Any, queue: Any) -> None:
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
        if pipeline is not None or not getattr(self, "horse_pid", 0):
            return super().heartbeat(timeout, pipeline)  # type: ignore[misc]
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
        # wake up often enough to reconcile on time (RQ blocks ~7 minutes by default)
        rq_timeout = super().dequeue_timeout  # type: ignore[misc]
        return max(1, min(rq_timeout, math.ceil(self.runtime.settings.reconcile_interval_s)))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return bool(super().should_run_maintenance_tasks) or time.monotonic() >= self._next_reconcile_s  # type: ignore[misc]

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:  # type: ignore[misc]
            super().run_maintenance_tasks()  # type: ignore[misc]
        else:
            self._revive_scheduler()
        self.periodic_reconcile()

    def _revive_scheduler(self) -> None:
        """Start the scheduler again if its process died (RQ checks every 10 minutes only)."""
        scheduler = self.scheduler
        if self._burst_mode or scheduler is None or not self.last_cleaned_at:
            return
        process = getattr(scheduler, "_process", None)
        if process is None or not process.is_alive():
            from rq.exceptions import StopRequested

            try:
                scheduler.acquire_locks(auto_start=True)
            except StopRequested:
                raise
            except Exception as exc:
                log.debug("scheduler not restarted: %s", exc)

    def periodic_reconcile(self) -> None:
        """One reconcile pass for the whole cluster per ``reconcile_interval_s``.

        Every worker tries; a Redis key with that lifetime picks one of them. Errors are
        logged and the worker goes on: reconcile must never take a worker down.
        """
        now = time.monotonic()
        if now < self._next_reconcile_s:
            return
        interval_s = self.runtime.settings.reconcile_interval_s
        self._next_reconcile_s = now + interval_s
        from rq.exceptions import StopRequested

        from rqjobs.reconcile import reconcile_if_due

        try:
            report = reconcile_if_due(self.runtime, interval_s)
        except StopRequested:
            raise  # a SIGTERM arrived during the pass: RQ's loop must see it
        except Exception as exc:
            level = logging.DEBUG if is_broker_error(exc) else logging.WARNING
            log.log(level, "reconcile pass failed: %s: %s", type(exc).__name__, exc, exc_info=level > 20)
            return
        for change in report.changes if report else ():
            log.warning("reconcile: %s", change.describe())

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
        if horse_pid:
            limit_s = (job.timeout if job.timeout and job.timeout > 0 else defaults.DEFAULT_TIMEOUT_S) + 60
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
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
        from rqjobs.reconcile import release_run
        from rqjobs.worker import _signal_description, _task_id

        status = self.last_horse_status
        ended = "its task process " + (
            _signal_description(status) if status is not None else "was not seen to end"
        )
        change = release_run(
            self.runtime,
            task_id=_task_id(job),
            job_id=job.id,
            worker_label=self.label,
            worker_name=self.name,
            why=ended,
        )
        if change is not None:
            log.warning("after the Redis outage: %s", change.describe())


# -- the supervisor --------------------------------------------------------------------------

#: a burst worker whose loop fails this often for reasons other than Redis gives up
_BURST_MAX_FAILURES = 3


def _wait_for_redis(runtime: Runtime, give_up_s: float | None, should_stop: Callable[[], bool]) -> bool:
    """Ping with backoff until Redis answers; False once ``give_up_s`` has passed or on a stop."""
    started = time.monotonic()
    delay_s = 0.2
    while not should_stop():
        try:
            runtime.redis.ping()
            return True
        except Exception as exc:
            if not is_broker_error(exc):
                raise
        if give_up_s is not None and time.monotonic() - started > give_up_s:
            return False
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, defaults.REDIS_RECONNECT_MAX_WAIT_S)
    return False


def run_supervised(
    runtime: Runtime,
    make_worker: Callable[[], Any],
    run_loop: Callable[[Any], bool] | None = None,
    *,
    burst: bool,
    with_scheduler: bool,
    logging_level: str,
) -> bool:
    """Run ``make_worker().work(...)`` (or ``run_loop(worker)``) until it ends normally,
    restarting it after Redis outages.

    RQ's loop quits on a Redis timeout and on any error outside its dequeue. Here the worker
    waits for Redis, settles the job it was watching, and starts a fresh loop in the same
    process (same ``host:pid``, same liveness key). A stop request (SIGINT/SIGTERM) ends it;
    a cold shutdown's SystemExit passes through. A burst worker gives up after
    ``BURST_REDIS_OUTAGE_LIMIT_S`` without Redis.
    """
    from rq.exceptions import StopRequested
    from rq.logutils import setup_loghandlers

    from rqjobs.exceptions import BrokerUnavailable

    setup_loghandlers(logging_level, name="rqjobs")
    give_up_s = defaults.BURST_REDIS_OUTAGE_LIMIT_S if burst else None
    label = process_label()
    beacon: LivenessBeacon | None = None
    worked = False
    failures = 0
    try:
        while True:
            worker = None
            error: BaseException | None = None
            try:
                worker = make_worker()
                if beacon is None:
                    beacon = LivenessBeacon(runtime.settings, label, worker.name)
                    beacon.start()
                worker.beacon = beacon
                if run_loop is not None:  # the caller's loop around work() (a burst waiting for retries)
                    worked = run_loop(worker) or worked
                else:
                    loop_worked = worker.work(
                        burst=burst, with_scheduler=with_scheduler, logging_level=logging_level
                    )
                    worked = loop_worked or worked
            except StopRequested:
                return worked
            except Exception as exc:
                error = exc
            if worker is not None and (worker.stop_signaled or (error is None and worker.drained)):
                return worked
            broker_trouble = (error is not None and is_broker_error(error)) or (
                worker is not None and worker.broker_lost
            )
            if not broker_trouble:
                log.error("worker loop failed (%s)", _why(worker, error), exc_info=error)
                failures += 1
                if burst and failures >= _BURST_MAX_FAILURES and error is not None:
                    raise error
            log.warning("worker loop ended (%s); starting it again once Redis answers", _why(worker, error))

            def stop_requested(w: Any = worker) -> bool:
                return w is not None and bool(w.stop_signaled)

            try:
                if not _wait_for_redis(runtime, give_up_s, stop_requested):
                    if stop_requested():
                        return worked
                    raise BrokerUnavailable(
                        f"Redis stayed unreachable for {give_up_s:g} s; the burst worker gives up"
                    )
                if worker is not None:
                    worker.settle_inflight()
            except StopRequested:
                return worked
            time.sleep(min(failures, 5) * 0.5)
    finally:
        if beacon is not None:
            beacon.stop()


def _why(worker: Any, error: BaseException | None) -> str:
    if error is not None:
        return f"{type(error).__name__}: {error}"
    if worker is not None and worker.broker_lost:
        return "Redis connection lost"
    return "unexpected exit"


# -- several workers on one host -------------------------------------------------------------


def _pool_worker_main(
    settings: Settings,
    queues: Sequence[str],
    burst: bool,
    with_scheduler: bool,
    logging_level: str,
    pool_pid: int,
) -> None:
    """Body of one pool worker process: fresh handles, then the usual supervised worker."""
    from rqjobs.config import set_current_settings
    from rqjobs.runtime import get_runtime, reset_runtimes
    from rqjobs.worker import run_worker

    # a worker whose pool was killed stops after its current job (warm shutdown)
    die_with_parent(signal.SIGTERM, pool_pid)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # not the pool's handlers, until RQ installs its own
    set_current_settings(settings)
    reset_runtimes()  # the parent's Redis client and queues stay with the parent
    run_worker(
        get_runtime(settings), queues, burst=burst, with_scheduler=with_scheduler, logging_level=logging_level
    )


def run_worker_pool(
    runtime: Runtime,
    queues: Sequence[str],
    *,
    num_workers: int,
    burst: bool = False,
    with_scheduler: bool = True,
    logging_level: str = "INFO",
) -> None:
    """``rqjobs worker --workers N``: RQ's WorkerPool running N rqjobs workers on this host.

    RQ's pool builds each worker from a class and a Redis connection; an rqjobs worker
    needs the settings, its task modules and a runtime of its own, so each pool process
    runs :func:`rqjobs.worker.run_worker` instead. The pool restarts a worker that dies
    (not in burst mode) and stops them all on SIGINT/SIGTERM.
    """
    from multiprocessing import get_context

    from rq.serializers import JSONSerializer
    from rq.worker_pool import WorkerPool

    from rqjobs.broker.job import RqjobsJob
    from rqjobs.tasks import commons
    from rqjobs.worker import RqjobsWorker

    commons.load_task_modules(runtime.settings)  # imported once here, inherited by every fork
    settings = runtime.settings
    fork_process = get_context("fork").Process

    class RqjobsWorkerPool(WorkerPool):
        def get_worker_process(
            self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
        ) -> Any:
            return fork_process(
                target=_pool_worker_main,
                args=(settings, list(queues), burst, with_scheduler, logging_level, os.getpid()),
                name=f"rqjobs worker {name}",
            )

    pool = RqjobsWorkerPool(
        list(queues),
        connection=runtime.redis,
        num_workers=num_workers,
        worker_class=RqjobsWorker,
        serializer=JSONSerializer,
        job_class=RqjobsJob,
    )
    pool.start(burst=burst, logging_level=logging_level)
