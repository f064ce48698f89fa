"""The supervisor around RQ's worker loop: start it again after a Redis outage.

RQ's loop quits on a Redis timeout and on any error outside its dequeue; here the worker
waits for Redis, settles the job it was watching and starts a fresh loop in the same
process, so ``rqjobs worker`` survives a Redis restart.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rqjobs import defaults
from rqjobs.broker.connection import is_broker_error
from rqjobs.hostpid import host_pid
from rqjobs.worker.health import revive_embedded_redis
from rqjobs.worker.liveness import LivenessBeacon

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")


def _to_stderr(logger: logging.Logger) -> None:
    """RQ's log handlers write to stdout; a worker's log is for people, so it goes to stderr."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def log_to_stderr(logging_level: str) -> None:
    """Every log line of the worker, RQ's included, on stderr (stdout is for data).

    RQ gives each of its loggers (``rq.worker``, ``rq.scheduler``, ``rq.worker_pool``) a
    stdout handler unless the logger or a parent already has one. Handlers on
    ``rqjobs`` and on the parent ``rq``, moved to stderr, come first; so RQ adds none.
    """
    from rq.logutils import setup_loghandlers

    for name in ("rqjobs", "rq"):
        setup_loghandlers(logging_level, name=name)
        _to_stderr(logging.getLogger(name))
    for name in ("rq.worker", "rq.scheduler", "rq.worker_pool"):  # any set up before this call
        _to_stderr(logging.getLogger(name))


#: a burst worker whose loop fails this often for reasons other than Redis gives up
_BURST_MAX_FAILURES = 3


def _wait_for_redis(
    runtime: Runtime,
    give_up_s: float | None,
    should_stop: Callable[[], bool],
    on_tick: Callable[[], None] = lambda: None,
) -> bool:
    """Ping with backoff until Redis answers; False once ``give_up_s`` has passed or on a stop.

    ``on_tick`` runs at each try: the main loop is waiting, not stuck.
    """
    started = time.monotonic()
    delay_s = 0.2
    while not should_stop():
        on_tick()
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


def _require_redis(runtime: Runtime) -> None:
    """A burst worker that cannot reach Redis at its start has nothing to work: it says so
    and exits (1) after one try, bounded by ``redis_socket_timeout_s``, instead of waiting
    out an outage it was never part of."""
    from rqjobs.broker.connection import describe
    from rqjobs.exceptions import BrokerUnavailable

    try:
        runtime.redis.ping()
    except Exception as exc:
        if not is_broker_error(exc):
            raise
        raise BrokerUnavailable(
            f"cannot reach Redis at {describe(runtime.settings)} ({type(exc).__name__}: {exc}); "
            "the burst worker has nothing to work and exits"
        ) from None


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

    from rqjobs.exceptions import BrokerUnavailable, StoreFailing

    log_to_stderr(logging_level)  # before RQ's work() sets up its own, so RQ keeps these
    give_up_s = defaults.BURST_REDIS_OUTAGE_LIMIT_S if burst else None
    if burst:
        _require_redis(runtime)
    label = host_pid()
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
            except StoreFailing:
                raise  # a burst worker's database stayed down: it said why; the queue is intact
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

                def tick(b: LivenessBeacon | None = beacon) -> None:
                    if b is not None:
                        b.note_progress()
                    revive_embedded_redis(runtime)

                if not _wait_for_redis(runtime, give_up_s, stop_requested, tick):
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
