"""Every Redis key name rqjobs reads or writes, in one place.

rqjobs' own keys first; then RQ's, which only :mod:`rqjobs.broker.rq_internals` uses
(tests/test_rq_internals.py checks them against the installed RQ).
"""

from __future__ import annotations

# -- rqjobs' own keys ------------------------------------------------------------------------

#: ``rqjobs:worker:<host>:<pid>`` -> the RQ worker name that process runs; short-lived, refreshed
LIVENESS_KEY_PREFIX = "rqjobs:worker:"
#: when this Redis first saw an rqjobs worker (server clock, seconds)
REDIS_SINCE_KEY = "rqjobs:redis-since"
#: held by the reconcile pass running now (``host:pid#random``)
RECONCILE_LOCK_KEY = "rqjobs:reconcile:lock"
#: the workers' periodic pass: whoever sets it runs the pass of this interval
RECONCILE_TURN_KEY = "rqjobs:reconcile:turn"
#: an odd state reconcile saw once, to act on when it sees it again later
SUSPECT_KEY_PREFIX = "rqjobs:reconcile:suspect:"
#: the RQ job id of a row made for a job enqueued without rqjobs (its id is not the row's)
FOREIGN_JOB_KEY_PREFIX = "rqjobs:task-job:"
#: epoch seconds since which some schedule ticker has run without a break (short-lived,
#: refreshed by every ticker; see rqjobs.schedules.ticker)
SCHEDULES_ALIVE_SINCE_KEY = "rqjobs:schedules:alive-since"
#: hash ``host:pid`` -> epoch seconds of that worker's latest liveness beat; kept after the
#: worker dies (its key expires, this field stays) so reconcile can date a dead worker's end
WORKERS_SEEN_KEY = "rqjobs:workers:seen"
#: ``rqjobs:worker-state:<host>:<pid>`` -> why a live worker takes no jobs now (e.g.
#: ``store failing``); set with the liveness key's expiry, deleted when the cause clears.
#: `rqjobs workers` and the dashboard show it next to RQ's own state
WORKER_STATE_KEY_PREFIX = "rqjobs:worker-state:"
#: ``rqjobs:limit:<task name>``: the running slots of a task with a concurrency limit, a
#: sorted set of RQ job ids scored by when the slot expires (Redis server time, seconds);
#: see rqjobs.broker.slots
LIMIT_SLOTS_KEY_PREFIX = "rqjobs:limit:"


def liveness_key(label: str) -> str:
    return LIVENESS_KEY_PREFIX + label


def worker_state_key(label: str) -> str:
    return WORKER_STATE_KEY_PREFIX + label


def limit_slots_key(task_name: str) -> str:
    return LIMIT_SLOTS_KEY_PREFIX + task_name


def suspect_key(job_id: str) -> str:
    return SUSPECT_KEY_PREFIX + job_id


def foreign_job_key(task_id: int) -> str:
    return f"{FOREIGN_JOB_KEY_PREFIX}{task_id}"


# -- RQ's keys (RQ 2.x spells them so; not part of its public API) ---------------------------

RQ_QUEUES_KEY = "rq:queues"
RQ_QUEUE_PREFIX = "rq:queue:"


def rq_job_key(job_id: str) -> str:
    return f"rq:job:{job_id}"


def rq_execution_key(member: str) -> str:
    """An execution hash; ``member`` is its started-registry entry ``<job id>:<execution id>``."""
    return f"rq:execution:{member}"


def rq_executions_key(job_id: str) -> str:
    return f"rq:executions:{job_id}"


def rq_scheduler_lock_key(queue_name: str) -> str:
    return f"rq:scheduler-lock:{queue_name}"


def rq_worker_key(worker_name: str) -> str:
    """A worker's hash (state, queues, current job, birth, heartbeat, job counts)."""
    return f"rq:worker:{worker_name}"


def rq_scheduler_key(owner: str) -> str:
    return f"rq:scheduler:{owner}"
