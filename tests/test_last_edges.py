"""Row truth at the last edges (issue 11): horses that end without a word, results too large
for the row, progress that RQ and the row must agree on, the end a dead worker's row
records. (RQ's started registry after every row is final: tests/test_reconcile.py,
``test_a_started_entry_whose_execution_expired_goes_once_the_row_is_final``.)

Real parts throughout: a private redis-server, real `rqjobs worker` processes, SQLite here
and PostgreSQL / MariaDB where the database matters (``db_url``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import TESTS_DIR, Project, wait_for
from tests.helpers import configure

MODULES = ("sample_tasks", "edge_tasks")


def use_edge_tasks(project: Project, **settings: Any) -> None:
    shutil.copy(TESTS_DIR / "support" / "edge_tasks.py", project.root / "edge_tasks.py")
    configure(project, tasks_modules=MODULES, **settings)


def rq_job(project: Project, task_id: int) -> Any:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    assert project.redis is not None
    return Job.fetch(str(task_id), connection=project.redis.client(), serializer=JSONSerializer)


def started_ids(project: Project, queue: str = "default") -> list[str]:
    from rq.registry import StartedJobRegistry

    q = project.runtime().queue(queue)
    return StartedJobRegistry(queue=q).get_job_ids(cleanup=False)


def failed_ids(project: Project, queue: str = "default") -> list[str]:
    return project.runtime().queue(queue).failed_job_registry.get_job_ids()


def stop(worker: Any) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except Exception:
            worker.kill()
            worker.wait(10)


# -- 1. a horse that ends without the task's outcome recorded --------------------------------

ENDINGS = [
    pytest.param(
        "quiet-exit",
        ["--code", "0"],
        "work horse exited with status 0 before the task recorded an outcome",
        id="os._exit(0)",
    ),
    pytest.param(
        "exec-true", [], "work horse exited with status 0 before the task recorded an outcome", id="exec-true"
    ),
    pytest.param(
        "quiet-exit",
        ["--code", "3"],
        "work horse exited with status 3 before the task recorded an outcome",
        id="os._exit(3)",
    ),
    pytest.param(
        "kill-self", ["--sig", str(int(signal.SIGKILL))], "work horse killed by SIGKILL", id="SIGKILL"
    ),
    pytest.param("segfault", [], "work horse killed by SIGSEGV", id="SIGSEGV"),
]


@pytest.mark.parametrize(("task", "args", "what"), ENDINGS)
def test_a_horse_that_ends_without_an_outcome_fails_its_row(
    project: Project, task: str, args: list[str], what: str
) -> None:
    use_edge_tasks(project)
    task_id = project.enqueue(task, *args)
    after = project.enqueue("add", "--a", "1", "--b", "2")
    project.work()
    row = project.row(task_id)
    assert row.status == "failed", row.log
    assert row.attempts == 1 and row.finished_at is not None
    assert f"--- attempt 1 {what}" in row.log, row.log
    job = rq_job(project, task_id)
    assert job.get_status() == "failed"  # RQ agrees
    assert str(task_id) in failed_ids(project)
    assert started_ids(project) == []
    assert project.row(after).status == "finished"  # the worker went on


@pytest.mark.parametrize("task", ["quiet-exit", "exec-true"])
def test_a_quiet_exit_with_retries_is_retried_then_fails(project: Project, task: str) -> None:
    use_edge_tasks(project)
    task_id = project.enqueue(task, "--retries", "2")
    project.work()
    row = project.row(task_id)
    assert row.status == "failed", row.log
    assert row.attempts == 3
    assert row.log.count("exited with status 0 before the task recorded an outcome") == 3, row.log
    assert rq_job(project, task_id).get_status() == "failed"
    assert started_ids(project) == []


def test_a_quiet_exit_with_a_retry_left_runs_again_and_finishes(project: Project) -> None:
    use_edge_tasks(project)
    marker = project.root / "first.pid"
    task_id = project.enqueue("quiet-exit-first", "--marker", str(marker), "--retries", "1")
    project.work()
    row = project.row(task_id)
    assert row.status == "finished", row.log
    assert row.attempts == 2 and row.result == {"result": "second run"}
    assert "--- attempt 1 work horse exited with status 0 before the task recorded an outcome" in row.log
    assert rq_job(project, task_id).get_status() == "finished"
    assert started_ids(project) == []


def test_the_running_worker_fails_the_row_itself_not_reconcile(project: Project) -> None:
    """A long-running worker whose reconcile pass is an hour away: only the worker's own
    look at the horse's end can fail the row."""
    use_edge_tasks(project, reconcile_interval_s=3600.0)
    marker = project.root / "horse.pid"
    task_id = project.enqueue("quiet-exit", "--code", "0", "--marker", str(marker))
    worker = project.start_worker()
    try:
        wait_for(marker.exists, message="the task to start")
        exited_at = datetime.fromtimestamp(marker.stat().st_mtime, tz=timezone.utc)
        row = wait_for(
            lambda: (r := project.row(task_id)).status == "failed" and r,
            timeout=30,
            message="the row to fail",
        )
        assert started_ids(project) == []
    finally:
        stop(worker)
    assert row.finished_at is not None
    latency = (row.finished_at.replace(tzinfo=timezone.utc) - exited_at).total_seconds()
    print(f"\nquiet exit: row failed {latency:.3f} s after the horse's last write")
    assert "exited with status 0 before the task recorded an outcome" in row.log


def test_reconcile_fails_a_row_whose_live_worker_left_the_job(project: Project) -> None:
    """The state a worker without the fix left: the row running under a worker that lives and
    is idle, RQ's job started by that worker loop. `rqjobs reconcile` must act on it."""
    from rqjobs import enqueue_task
    from rqjobs.keys import liveness_key

    use_edge_tasks(project)
    worker = project.start_worker()  # listens on "default" only
    try:
        label = f"{socket.gethostname()}:{worker.pid}"
        client = project.redis.client()  # type: ignore[union-attr]
        name = wait_for(lambda: client.get(liveness_key(label)), message="the worker's liveness key").decode()
        wait_for(lambda: client.hget(f"rq:worker:{name}", "state") == b"idle", message="the worker idle")
        runtime = project.runtime()
        record = enqueue_task("add", description="left", a=1, b=2, queue="elsewhere", runtime=runtime)
        assert runtime.store.mark_running(record.id, label)
        # what RQ's horse writes when it starts the job (prepare_job_execution), left behind
        queue = runtime.queue("elsewhere")
        job = rq_job(project, record.id)
        with client.pipeline() as pipe:
            job.prepare_for_execution(name, pipeline=pipe)
            pipe.lrem(queue.key, 0, str(record.id))
            pipe.zadd(queue.started_job_registry.key, {f"{record.id}:deadbeef": time.time() + 600})
            pipe.execute()
        assert rq_job(project, record.id).get_status() == "started"
        result = project.rqjobs("reconcile", check=True)
        assert "1 changes made" in result.stdout + result.stderr
        assert "no longer runs it" in result.stdout + result.stderr
        row = project.row(record.id)
        assert row.status == "failed", row.log
        assert "work horse ended without an outcome" in row.log
        assert "no longer runs it" in row.log
        assert rq_job(project, record.id).get_status() == "failed"
        assert started_ids(project, "elsewhere") == []
        again = project.rqjobs("reconcile", check=True)
        assert "0 changes made" in again.stdout + again.stderr
    finally:
        stop(worker)


# -- 2. results too large, and answered database errors ---------------------------------------


def test_answered_errors_are_raised_as_themselves_without_retrying(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An IntegrityError (a duplicate id) and a DataError (a name over its column) are the
    statement's fault: raised at once as they are, never retried as an outage."""
    from rqjobs import defaults
    from rqjobs.store.engine import get_engine
    from rqjobs.store.repository import TaskStore

    store = TaskStore(get_engine(db_url), retry_s=30)
    columns: dict[str, Any] = {
        "description": "d",
        "queue": "default",
        "args": [],
        "kwargs": {},
        "timeout_s": 60,
    }
    first = store.insert(name="add", **columns)
    with pytest.raises(Exception) as caught:
        store.insert(name="add", id=first.id, **columns)
    assert type(caught.value).__name__ == "IntegrityError"
    assert "unreachable" not in str(caught.value)
    long_name = "n" * (defaults.NAME_MAX_CHARS + 50)
    if db_url.startswith("sqlite"):
        assert store.insert(name=long_name, **columns).name == long_name  # SQLite keeps any length
    else:
        with pytest.raises(Exception) as caught:
            store.insert(name=long_name, **columns)
        assert type(caught.value).__name__ == "DataError", caught.value
        assert "unreachable" not in str(caught.value)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_a_database_that_answers_with_an_error_is_not_called_unreachable(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 20 MB result written past the decorator's limit: SQLite and PostgreSQL store it,
    MariaDB refuses the packet and drops the connection; never "unreachable", and no
    retrying for the whole of ``db_retry_s`` either."""
    from rqjobs.exceptions import DatabaseError
    from rqjobs.store.engine import get_engine
    from rqjobs.store.repository import TaskStore

    store = TaskStore(get_engine(db_url), retry_s=30)
    record = store.insert(name="add", description="big", queue="default", args=[], kwargs={}, timeout_s=60)
    assert store.mark_running(record.id, "host:1")
    big = {"blob": "x" * 20_000_000}
    try:
        stored = store.mark_finished(record.id, big)
    except DatabaseError as exc:
        message = str(exc)
        assert "unreachable" not in message, message
        assert db_url.startswith("mysql"), message
        assert "max_allowed_packet" in message or "answered" in message, message
        # gave up after a few tries, not after the whole outage budget
        from rqjobs.store.retry import ANSWERED_DROPS_LIMIT

        retries = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert len(retries) == ANSWERED_DROPS_LIMIT - 1, [r.getMessage() for r in retries]
        assert store.get(record.id).status == "running"  # nothing half-written
    else:
        assert stored and not db_url.startswith("mysql")
        assert store.get(record.id).result == big


def test_a_result_over_max_result_bytes_fails_for_good_on_every_database(
    project: Project, db_url: str
) -> None:
    """20 MB: the clean message, on the first attempt, retries or not; 500 KB: stored."""
    use_edge_tasks(project, database_url=db_url)
    big = project.enqueue("big-result", "--size", "20000000", "--retries", "2")
    fine = project.enqueue("big-result", "--size", "500000")
    project.work()
    row = project.row(big)
    assert row.status == "failed", row.log
    assert row.attempts == 1  # permanent: no retry
    assert "result too large (20000012 bytes > 1048576)" in row.log, row.log
    assert "unreachable" not in row.log
    assert row.result is None
    assert rq_job(project, big).get_status() == "failed"
    row = project.row(fine)
    assert row.status == "finished", row.log
    assert len(row.result["blob"]) == 500_000


def test_max_result_bytes_comes_from_the_environment_and_is_checked(project: Project) -> None:
    use_edge_tasks(project)
    project.env["RQJOBS_MAX_RESULT_BYTES"] = "100"
    task_id = project.enqueue("big-result", "--size", "200")
    project.work()
    assert "result too large (212 bytes > 100)" in project.row(task_id).log
    from rqjobs.config import Settings

    assert Settings.max_result_bytes == 1_048_576  # the default: 1 MiB
    project.env["RQJOBS_MAX_RESULT_BYTES"] = "0"
    result = project.rqjobs("enqueue", "add", "--description", "x", "--a", "1", "--b", "2")
    assert result.returncode == 2 and "max_result_bytes must be positive" in result.stderr
    assert "Traceback" not in result.stderr


# -- 3. job.meta and the row agree when a task ends --------------------------------------------


@pytest.mark.parametrize("fail", [False, True], ids=["finished", "failed"])
def test_job_meta_and_the_row_agree_at_the_end(project: Project, fail: bool) -> None:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    use_edge_tasks(project, progress_interval_s=30.0)  # the second report is surely held back
    args = ["--fail"] if fail else []
    task_id = project.enqueue("two-steps", *args)
    project.work()
    row = project.row(task_id)
    job = Job.fetch(str(task_id), connection=project.redis.client(), serializer=JSONSerializer)  # type: ignore[union-attr]
    meta = job.get_meta()
    if fail:
        assert row.status == "failed"
        assert (row.progress, row.progress_message) == (75, "step 2/2")
    else:
        assert row.status == "finished"
        assert (row.progress, row.progress_message) == (100, "step 2/2")
    assert (meta["progress"], meta["progress_message"]) == (row.progress, row.progress_message)


# -- 4. a dead worker's row ends when the worker was last known alive --------------------------


def test_a_dead_workers_row_ends_at_its_last_beat_not_at_reconcile(project: Project) -> None:
    """SIGKILL a worker and its horse mid-task; reconcile runs well after (no other worker
    runs it in between). finished_at is within about a liveness interval of the kill."""
    ttl_s = 3.0
    use_edge_tasks(project, worker_liveness_ttl_s=ttl_s, reconcile_interval_s=3600.0)
    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-marked", "--seconds", "120", "--marker", str(marker))
    worker = project.start_worker()
    try:
        wait_for(marker.exists, message="the task to start")
        horse = int(marker.read_text())
        os.kill(worker.pid, signal.SIGKILL)
        os.kill(horse, signal.SIGKILL)
        killed_at = datetime.now(timezone.utc)
        worker.wait(10)
    finally:
        stop(worker)
    # well after: a reconcile that notices only now must not date the end now
    client = project.redis.client()  # type: ignore[union-attr]
    wait_for(lambda: not client.keys("rqjobs:worker:*"), timeout=30, message="the liveness key to expire")
    wait_for(lambda: datetime.now(timezone.utc) > killed_at + timedelta(seconds=4 * ttl_s), timeout=30)
    result = project.rqjobs("reconcile", check=True)
    noticed_at = datetime.now(timezone.utc)
    assert "1 changes made" in result.stdout + result.stderr
    row = project.row(task_id)
    assert row.status == "failed", row.log
    finished = row.finished_at.replace(tzinfo=timezone.utc)
    print(
        f"\ndead worker: finished_at {(finished - killed_at).total_seconds():+.2f} s from the kill, "
        f"reconcile noticed {(noticed_at - killed_at).total_seconds():.1f} s after it"
    )
    # the last beat came at most one beat interval (ttl/3) before the kill
    assert killed_at - timedelta(seconds=ttl_s) <= finished <= killed_at
    assert "Last known alive at" in row.log and "noticed at" in row.log


def test_the_seen_hash_keeps_live_and_recent_beats_only(project: Project) -> None:
    """A worker's field goes when it stops cleanly; a field silent for over a week goes
    when a worker starts; a recent one (a worker killed lately) stays for reconcile."""
    from rqjobs.keys import WORKERS_SEEN_KEY

    use_edge_tasks(project)
    client = project.redis.client()  # type: ignore[union-attr]
    client.hset(WORKERS_SEEN_KEY, mapping={"ghost:1": time.time() - 8 * 86_400, "recent:2": time.time() - 60})
    task_id = project.enqueue("add", "--a", "1", "--b", "2")
    project.work()
    assert project.row(task_id).status == "finished"
    assert set(client.hkeys(WORKERS_SEEN_KEY)) == {b"recent:2"}


# -- 5. test_chaos with seed 284206045 ----------------------------------------------------------


def test_a_scheduled_retry_is_written_in_one_transaction(project: Project) -> None:
    """RQ's Job.retry wrote ``status = scheduled`` at once and the rest (retries_left - 1, the
    scheduled registry) in the caller's pipeline: a horse killed in between left a job RQ
    called scheduled in no registry, with its retry not used up. Reconcile put it back in
    its queue and the task ran once more than its retries allow (test_chaos, "fail" tasks
    failing after 3 attempts). Nothing may reach Redis before the pipeline runs."""
    from rq.serializers import JSONSerializer

    from rqjobs import enqueue_task
    from rqjobs.broker.job import RqjobsJob

    use_edge_tasks(project)
    runtime = project.runtime()
    record = enqueue_task("add", description="r", a=1, b=2, retries=1, retry_interval_s=5, runtime=runtime)
    queue = runtime.queue("default")
    client = runtime.redis
    job = RqjobsJob.fetch(str(record.id), connection=client, serializer=JSONSerializer)
    client.hset(job.key, "status", "started")
    assert queue.scheduled_job_registry.get_job_ids() == [], "before"
    with client.pipeline() as pipe:
        job.retry(queue, pipe)
        assert client.hget(job.key, "status") == b"started"  # nothing written yet
        assert queue.scheduled_job_registry.get_job_ids() == []
        pipe.execute()
    fetched = RqjobsJob.fetch(str(record.id), connection=client, serializer=JSONSerializer)
    assert fetched.get_status() == "scheduled" and fetched.retries_left == 0
    assert queue.scheduled_job_registry.get_job_ids() == [str(record.id)]
