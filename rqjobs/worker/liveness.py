"""Worker liveness in Redis: a short-lived key per worker process, and the view reconcile reads.

RQ notices a dead worker only when its heartbeat expires (~90 s while a job runs) and then
only in the maintenance pass that runs every 10 minutes; until then the task row would say
``running`` for a job nobody runs. So each rqjobs worker keeps a short-lived key of its own:

* ``rqjobs:worker:<host>:<pid>`` (the row's ``worker`` column), refreshed every third of
  ``worker_liveness_ttl_s`` by a daemon thread that uses its own Redis connection and does
  nothing else, so it never holds a lock the forked work horse could need. Reconcile treats
  a worker as dead when its key is gone and, on the same machine, its process is gone too.
  The thread vouches only for a main loop that moves: the loop stamps its progress
  (:meth:`LivenessBeacon.note_progress`), and once the stamp is older than the TTL the
  beacon stops renewing the key and says ``stuck`` in ``rqjobs:worker-state:<host>:<pid>``
  instead, so reconcile elsewhere can act on a worker whose loop hangs (issue 11).
* ``rqjobs:worker-state:<host>:<pid>``: why a live worker takes no jobs (``store failing``,
  ``stuck: ...``), written by the beacon with the TTL as expiry.
* ``rqjobs:redis-since``: when this Redis first saw an rqjobs worker. With the server's
  uptime it tells reconcile whether a missing key means anything: right after Redis
  restarted or lost its data, every key is missing and no worker is presumed dead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from rqjobs.hostpid import is_this_host, split_host_pid
from rqjobs.keys import REDIS_SINCE_KEY, WORKERS_SEEN_KEY, liveness_key, worker_state_key
from rqjobs.worker.process import label_of_worker_name, local_process_alive

if TYPE_CHECKING:
    from redis import Redis

    from rqjobs.config import Settings

log = logging.getLogger("rqjobs.worker")

#: how long ``rqjobs:workers:seen`` keeps the last beat of a worker that stopped beating
SEEN_KEPT_S = 7 * 86_400

# "set the marker to the server's clock unless it exists; return its value": one round trip,
# and the server's clock, so hosts with skewed clocks agree on its age
_MARK_SCRIPT = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1], 'NX')
return {redis.call('GET', KEYS[1]), t[1]}
"""

#: the state a worker's beacon writes when its main loop stopped moving
STUCK_STATE = "stuck"

# delete the state key only if it still says what this beacon wrote
_CLEAR_STATE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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

    def last_seen(self, label: str | None) -> datetime | None:
        """When the worker ``label`` last beat (UTC), or None if it never wrote one."""
        if not label:
            return None
        raw = self.redis.hget(WORKERS_SEEN_KEY, label)
        try:
            return datetime.fromtimestamp(float(raw), tz=timezone.utc) if raw is not None else None
        except ValueError:
            return None

    def state(self, label: str) -> str | None:
        """What the worker ``label`` says about itself (``rqjobs:worker-state:...``), if anything."""
        raw = self.redis.get(worker_state_key(label))
        return raw.decode() if isinstance(raw, bytes) else raw

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
        parsed = split_host_pid(label)
        if parsed is None:
            return None
        host, pid = parsed
        if self.key_present(label) or not self.trusted:
            return None
        if is_this_host(host):
            if local_process_alive(pid, started_before):
                state = self.state(label)
                if state is not None and state.startswith(STUCK_STATE):
                    # alive but its main loop hangs: it watches no horse and records nothing
                    return f"its process {pid} is alive but its main loop is {state}"
                return None
            return f"its process {pid} on this machine no longer exists: killed, or it crashed"
        return (
            f"it has not refreshed its liveness key in Redis for over {self.ttl_s:g} s: "
            "its machine is gone, or cut off from Redis"
        )


# -- the beacon ----------------------------------------------------------------------------


class LivenessBeacon:
    """A daemon thread that keeps ``rqjobs:worker:<label>`` alive while this process's main
    loop moves.

    It has its own Redis connection and takes no lock the main thread uses, so a fork in
    the main thread (the work horse) cannot inherit a lock held by it. The main loop calls
    :meth:`note_progress` as it goes (a plain float store: no lock); a stamp older than the
    TTL means the loop hangs, and the beacon stops vouching for it.
    """

    def __init__(self, settings: Settings, label: str, worker_name: str) -> None:
        self.settings = settings
        self.label = label
        self.worker_name = worker_name
        self.ttl_s = settings.worker_liveness_ttl_s
        self.interval_s = self.ttl_s / 3
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Redis | None = None
        self._progress_s = time.monotonic()
        #: why the worker takes no jobs now (None: it does); published with the key
        self.state: str | None = None
        self._published_state: str | None = None
        self._stuck_noted = False
        #: more leases that live exactly as long as this process does, refreshed on every
        #: beat with the beacon's own connection (rqjobs.worker.flow: concurrency-limit slots)
        self.hooks: list[Callable[[Redis], object]] = []

    def note_progress(self) -> None:
        """The main loop is moving (called from the main thread, often)."""
        self._progress_s = time.monotonic()

    def set_state(self, state: str | None) -> None:
        """Say (or stop saying) why this worker takes no jobs; published at once."""
        if state != self.state:
            self.state = state
            self._wake.set()

    def stalled_s(self) -> float:
        """How long the main loop has not moved."""
        return time.monotonic() - self._progress_s

    def beat(self) -> None:
        assert self._client is not None
        stalled_s = self.stalled_s()
        stuck = stalled_s > self.ttl_s
        if stuck and not self._stuck_noted:
            log.warning(
                "the worker's main loop has not moved for %.0f s; no longer renewing its liveness key",
                stalled_s,
            )
        elif not stuck and self._stuck_noted:
            log.info("the worker's main loop moves again; liveness key renewed")
        self._stuck_noted = stuck
        state = f"{STUCK_STATE} for {stalled_s:.0f} s" if stuck else self.state
        key = worker_state_key(self.label)
        ttl_ms = max(1, int(self.ttl_s * 1000))
        pipe = self._client.pipeline(transaction=False)
        if not stuck:
            pipe.set(liveness_key(self.label), self.worker_name, px=ttl_ms)
        if state is not None:
            pipe.set(key, state, px=ttl_ms)
        elif self._published_state is not None:
            pipe.eval(_CLEAR_STATE_SCRIPT, 1, key, self._published_state)
        pipe.eval(_MARK_SCRIPT, 1, REDIS_SINCE_KEY)
        if not stuck:
            # outlives the key: when this process dies, reconcile dates its runs' end from it
            # (a stuck main loop is not "known alive" for the runs it holds)
            pipe.hset(WORKERS_SEEN_KEY, self.label, f"{time.time():.3f}")
        pipe.execute()
        self._published_state = state
        for hook in list(self.hooks):
            try:
                hook(self._client)
            except Exception as exc:  # the liveness key is written: say so apart
                log.warning("liveness hook %s failed (%s: %s)", hook, type(exc).__name__, exc)

    def start(self) -> None:
        """Beat once now (so the key exists before any job starts), then in the background."""
        from rqjobs.broker.connection import connect

        self._client = connect(self.settings, start_embedded=False)
        self.note_progress()
        try:
            self.beat()
            self._forget_long_dead()
        except Exception as exc:  # Redis down: the thread keeps trying
            log.warning("liveness key not written yet (%s: %s); retrying", type(exc).__name__, exc)
        self._thread = threading.Thread(target=self._run, name="rqjobs-liveness", daemon=True)
        self._thread.start()

    def _forget_long_dead(self) -> None:
        """Drop ``rqjobs:workers:seen`` fields of processes silent for over a week.

        A killed worker's field stays so reconcile can date its rows' end; after a week no
        row of it is still ``running`` unnoticed, and the hash must not grow forever.
        """
        assert self._client is not None
        cutoff = time.time() - SEEN_KEPT_S
        old = []
        for label, raw in self._client.hgetall(WORKERS_SEEN_KEY).items():
            try:
                if float(raw) < cutoff:
                    old.append(label)
            except ValueError:
                old.append(label)
        if old:
            self._client.hdel(WORKERS_SEEN_KEY, *old)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            self._wake.wait(min(self.interval_s, 1.0) if failing else self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
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
        """Stop beating and delete the keys: a worker that exits cleanly is gone at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._client is not None:
            try:
                self._client.delete(liveness_key(self.label), worker_state_key(self.label))
                self._client.hdel(WORKERS_SEEN_KEY, self.label)
            except Exception:
                pass  # they expire on their own
            self._client.close()
            self._client = None
