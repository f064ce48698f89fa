"""rqjobs.broker.rq_internals leans on RQ internals; this pins them to the installed RQ.

If RQ renames a private method or moves a key, these fail before reconcile misbehaves.
Widening pyproject's RQ range means checking them again, and then changing
VERIFIED_RQ_RANGE: the last test fails until both agree.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path
from typing import Any

import redis
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.worker import Worker

from rqjobs import keys
from rqjobs.broker import rq_internals

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
PACKAGE = Path(rq_internals.__file__).resolve().parent.parent


def _parameters(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_the_private_methods_used_exist_with_the_parameters_used() -> None:
    # job._handle_failure(reason, pipe, worker_name="")
    assert _parameters(Job._handle_failure)[:4] == ["self", "exc_string", "pipeline", "worker_name"]
    # queue._enqueue_job(job, pipeline=pipe)
    assert _parameters(Queue._enqueue_job)[:3] == ["self", "job", "pipeline"]
    from rq.scripts import release_lock

    assert _parameters(release_lock) == ["connection", "lock_key", "owner_token"]


def test_key_spellings_match_rq() -> None:
    connection = redis.Redis()  # never connects: only key names are computed
    assert keys.rq_job_key("42") == Job.key_for("42")
    queue = Queue("default", connection=connection)
    assert keys.RQ_QUEUES_KEY == Queue.redis_queues_keys
    assert keys.RQ_QUEUE_PREFIX + "default" == queue.key
    execution = Execution("exec-1", "42", connection=connection)
    assert keys.rq_execution_key(execution.composite_key) == execution.key
    assert execution.composite_key.rsplit(":", 1)[0] == "42"  # started-registry members: <job id>:<exec id>
    assert keys.rq_executions_key("42") == ExecutionRegistry("42", connection=connection).key
    assert keys.rq_scheduler_lock_key("default") == RQScheduler.get_locking_key("default")
    from rq.scheduler import SCHEDULER_KEY_TEMPLATE

    assert keys.rq_scheduler_key("owner") == SCHEDULER_KEY_TEMPLATE % "owner"
    assert keys.rq_worker_key("w1") == Worker.redis_worker_namespace_prefix + "w1"


def test_the_worker_hash_fields_read_exist(redis_server: Any) -> None:
    """A registered RQ worker writes every field the workers page reads."""
    connection = redis_server.client()
    connection.flushall()
    worker = Worker(["default"], connection=connection, name="rqjobs-fields-check")
    worker.register_birth()
    worker.set_state("idle")
    worker.set_current_job_id("42")
    worker.heartbeat()
    worker.increment_successful_job_count()
    worker.increment_failed_job_count()
    try:
        info = rq_internals.worker_hashes(connection, ["rqjobs-fields-check", "nobody"])
        assert info["nobody"] == {}
        assert all(info["rqjobs-fields-check"][f] is not None for f in rq_internals.WORKER_FIELDS), info
    finally:
        worker.register_death()
        connection.flushall()


def test_a_job_left_started_by_a_live_worker_is_told_from_one_it_runs(redis_server: Any) -> None:
    """run_left_by_live_worker reads RQ's worker ``state`` (``busy``) and ``current_job``."""
    from rq.worker import WorkerStatus

    assert WorkerStatus.BUSY.value == "busy"
    connection = redis_server.client()
    connection.flushall()
    worker = Worker(["default"], connection=connection, name="rqjobs-left-check")
    worker.register_birth()
    job = Job.create(func=print, connection=connection, id="7")
    try:
        with connection.pipeline() as pipe:
            worker.set_state(WorkerStatus.BUSY, pipeline=pipe)
            worker.set_current_job_id("7", pipeline=pipe)
            job.prepare_for_execution(worker.name, pipeline=pipe)
            pipe.execute()
        assert not rq_internals.run_left_by_live_worker(connection, "7", worker.name)
        worker.set_state(WorkerStatus.IDLE)
        assert rq_internals.run_left_by_live_worker(connection, "7", worker.name)
        worker.set_state(WorkerStatus.BUSY)
        worker.set_current_job_id("8")
        assert rq_internals.run_left_by_live_worker(connection, "7", worker.name)
        assert not rq_internals.run_left_by_live_worker(connection, "7", "someone-else")
    finally:
        worker.register_death()
        connection.flushall()


def test_the_job_hash_fields_read_exist() -> None:
    job = Job.create(func=print, connection=redis.Redis(), id="42")
    mapping = job.to_dict()
    for field in ("status", "origin", "started_at", "worker_name"):
        assert field in mapping or hasattr(job, field), field


def test_pyproject_allows_only_the_verified_rq_range() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (rq_spec,) = [d for d in dependencies if re.match(r"rq\b", d) and not d.startswith("rqjobs")]
    assert rq_spec.replace(" ", "") == "rq" + rq_internals.VERIFIED_RQ_RANGE


def test_no_other_module_spells_an_rq_key_or_calls_rq_private_methods() -> None:
    pattern = re.compile(r"""["']rq:|\._handle_failure\(|\._enqueue_job\(""")
    offenders = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("rq_internals.py", "keys.py") and pattern.search(path.read_text())
    )
    assert offenders == []
