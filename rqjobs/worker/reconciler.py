"""The worker's periodic reconcile pass, in a thread of its own.

Run from the main loop, a pass stalled the worker whenever the database did: dequeuing and
watching the work horse waited on a frozen server's ping for as long as it was frozen
(issue 11). Here the pass runs in a daemon thread, so the main loop only ever waits for it
in a burst worker's start (see :meth:`Reconciler.run_now`), and then for a bounded time.

What the thread uses, and why a fork of the main thread (the work horse) stays safe:

* its own Redis connection (a :class:`~rqjobs.runtime.Runtime` of its own whose ``store``
  is the worker's): the horse never touches that client or its locks;
* the worker's engine pool: the child drops the pool it inherits after ``fork``
  (:mod:`rqjobs.store.engine`), so a connection the thread has checked out is never
  used by the horse;
* on SQLite, the fork gate (:func:`rqjobs.store.engine.fork_gate`) around each pass: the
  SQLite library's process-wide mutexes must not be held by this thread at the fork.
  A SQLite pass is short and local, so the fork waits for it at most briefly; a server
  database's pass never holds the fork up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rqjobs.broker.connection import is_broker_error

if TYPE_CHECKING:
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")


class Reconciler:
    """One reconcile pass for the cluster per ``interval_s``, tried from a daemon thread."""

    def __init__(self, runtime: Runtime, interval_s: float) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._passes = 0
        self._thread: threading.Thread | None = None
        self._own: Runtime | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        from rqjobs.broker.connection import connect
        from rqjobs.runtime import Runtime

        own = Runtime(self.runtime.settings)
        # share the worker's store (engine, pool); a Redis client of its own
        own.__dict__["store"] = self.runtime.store
        own.__dict__["redis"] = connect(self.runtime.settings, start_embedded=False)
        self._own = own
        self._thread = threading.Thread(target=self._run, name="rqjobs-reconcile", daemon=True)
        self._thread.start()

    def run_now(self, timeout_s: float, on_wait: Callable[[], None] = lambda: None) -> None:
        """Ask for a pass now and wait for it, at most ``timeout_s`` (a burst worker's start:
        rows reconcile re-queues must be in the queue before the burst finds it empty).
        ``on_wait`` runs every half second meanwhile (the caller is waiting, not stuck)."""
        deadline = time.monotonic() + timeout_s
        with self._done:
            target = self._passes + 1
            self._wake.set()
            while self._passes < target and self.alive:
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    return
                self._done.wait(min(0.5, left_s))
                on_wait()

    def stop(self) -> None:
        """Stop the thread; a pass stuck on the database is left to end on its own (daemon)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._own is not None and not self.alive:
            self._own.redis.close()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                self._wake.wait(self.interval_s)
            first = False
            self._wake.clear()
            if self._stop.is_set():
                break
            self._one_pass()
            with self._done:
                self._passes += 1
                self._done.notify_all()

    def _one_pass(self) -> None:
        """Errors are logged and the thread goes on: reconcile never takes a worker down."""
        from rqjobs.reconcile import reconcile_if_due
        from rqjobs.store.engine import fork_gate

        assert self._own is not None
        try:
            with fork_gate(self._own.store.engine):
                report = reconcile_if_due(self._own, self.interval_s)
        except Exception as exc:
            from rqjobs.exceptions import RqjobsError

            level = logging.DEBUG if is_broker_error(exc) else logging.WARNING
            # rqjobs' own errors say what failed; anything else gets its traceback
            trace = level > logging.INFO and not isinstance(exc, RqjobsError)
            log.log(level, "reconcile pass failed: %s: %s", type(exc).__name__, exc, exc_info=trace)
            return
        for change in report.changes if report else ():
            log.warning("reconcile: %s", change.describe())
