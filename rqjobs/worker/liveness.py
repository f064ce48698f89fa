"""Worker liveness in Redis: a short-lived key per worker process, and the view reconcile reads.

RQ notices a dead worker only when its heartbeat expires (~90 s while a job runs) and then
only in the maintenance pass that runs every 10 minutes; until then the task row would say
``running`` for a job nobody runs. So each rqjobs worker keeps a short-lived key of its own:

* ``rqjobs:worker:<host>:<pid>`` (the row's ``worker`` column), refreshed every third of
  ``worker_liveness_ttl_s`` by a daemon thread that uses its own Redis connection and does
  nothing else, so it never holds a lock the forked work horse could need. Reconcile treats
  a worker as dead when its key is gone and, on the same machine, its process is gone too.
* ``rqjobs:redis-since``: when this Redis first saw an rqjobs worker. With the server's
  uptime it tells reconcile whether a missing key means anything: right after Redis
  restarted or lost its data, every key is missing and no worker is presumed dead.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from rqjobs.hostpid import is_this_host, split_host_pid
from rqjobs.keys import REDIS_SINCE_KEY, WORKERS_SEEN_KEY, liveness_key
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
                return None
            return f"its process {pid} on this machine no longer exists: killed, or it crashed"
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
        # outlives the key: when this process dies, reconcile dates its runs' end from it
        pipe.hset(WORKERS_SEEN_KEY, self.label, f"{time.time():.3f}")
        pipe.execute()

    def start(self) -> None:
        """Beat once now (so the key exists before any job starts), then in the background."""
        from rqjobs.broker.connection import connect

        self._client = connect(self.settings, start_embedded=False)
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
                self._client.hdel(WORKERS_SEEN_KEY, self.label)
            except Exception:
                pass  # it expires on its own
            self._client.close()
            self._client = None
