"""The database unreachable for a while: through a TCP proxy the test cuts and restores,
so the shared PostgreSQL/MariaDB server itself keeps running for everyone else.

What must hold: a task that ends during a short outage still gets its final state
recorded once the database is back (bounded retries, ``db_retry_s``); past that budget
the job fails in RQ with the reason; an enqueue during an outage fails clearly and puts
nothing in Redis; a commit whose reply was lost is neither repeated nor misreported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from rqjobs.exceptions import DatabaseError
from rqjobs.store.engine import get_engine
from rqjobs.store.models import Task
from rqjobs.store.repository import TaskStore
from tests.conftest import Project, wait_for
from tests.support.databases import ServerDatabase
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def proxy(server_db: ServerDatabase) -> Iterator[TcpProxy]:  # noqa: F811
    upstream = server_db.url
    proxy = TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432).start()
    try:
        yield proxy
    finally:
        proxy.close()


def _configure(project: Project, proxy: TcpProxy, database: ServerDatabase, retry_s: float) -> None:
    project.write_config(
        database_url=proxy.url_for(database.url_string()),
        redis_url=project.redis.url,
        tasks_modules=["sample_tasks"],
        db_retry_s=retry_s,
    )


def _direct_store(database: ServerDatabase) -> TaskStore:
    """The test's own view of the rows, straight to the server (never through the proxy)."""
    return TaskStore(get_engine(database.url_string()), retry_s=0)


def _run_through_outage(project: Project, proxy: TcpProxy, database: ServerDatabase, down_s: float) -> int:
    """A 3 s task; the database goes away 1 s into it and comes back ``down_s`` later."""
    task_id = project.enqueue("sleep-for", "--seconds", "3", description="outlives an outage")
    worker = project.start_worker("--burst")
    try:
        store = _direct_store(database)
        wait_for(lambda: store.get(task_id).status == "running", timeout=30, message="the task to start")
        time.sleep(1)
        proxy.down()
        time.sleep(down_s)  # the task ends while the database is unreachable
        proxy.up()
        assert worker.wait(90) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    return task_id


def test_task_ending_during_an_outage_is_recorded_when_the_database_is_back(
    project: Project,
    proxy: TcpProxy,
    server_db: ServerDatabase,  # noqa: F811
) -> None:
    _configure(project, proxy, server_db, retry_s=30)
    task_id = _run_through_outage(project, proxy, server_db, down_s=5)
    assert proxy.cuts >= 1  # the horse's connection really was cut
    log = (project.root / "worker.log").read_text()
    assert f"could not update task {task_id} to finished" in log  # the write met the outage...
    row = _direct_store(server_db).get(task_id)
    assert row.status == "finished", (row.log, log)  # ...and landed once the database was back
    assert row.result == {"result": "slept"}
    assert (row.attempts, row.progress, row.log) == (1, 100, None)
    assert project.redis.client().zcard("rq:failed:default") == 0


def test_outage_longer_than_the_retry_budget_fails_the_job_with_the_reason(
    project: Project,
    proxy: TcpProxy,
    server_db: ServerDatabase,  # noqa: F811
) -> None:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    _configure(project, proxy, server_db, retry_s=2)
    # long enough that the decorator's write and the worker's safety net (2 s each) both
    # give up while the database is away
    task_id = _run_through_outage(project, proxy, server_db, down_s=12)
    redis = project.redis.client()
    assert redis.zrange("rq:failed:default", 0, -1) == [str(task_id).encode()]
    job = Job.fetch(str(task_id), connection=redis, serializer=JSONSerializer)
    reason = job.latest_result().exc_string
    assert f"the task database is unreachable: could not update task {task_id} to finished" in reason
    # the row could not be written: it is not reported finished; the job in RQ's failed
    # registry says why, for `rqjobs reconcile` to settle the row
    assert _direct_store(server_db).get(task_id).status == "running"


def test_enqueue_during_an_outage_fails_clearly_and_enqueues_nothing(
    project: Project,
    proxy: TcpProxy,
    server_db: ServerDatabase,  # noqa: F811
) -> None:
    _configure(project, proxy, server_db, retry_s=1)
    from rqjobs import enqueue_task

    first = project.enqueue("add", "--a", "1", "--b", "2")  # creates the schema, through the proxy
    # a long-lived process (a web app) whose engine is open before the outage
    runtime = project.runtime()
    enqueue_task("add", 5, 6, description="while up", runtime=runtime)
    assert runtime.store.retry_s == 1
    proxy.down()
    try:
        # a new command cannot even open the database: it says so at once
        result = project.rqjobs("enqueue", "add", "--description", "lost?", "--a", "1", "--b", "2")
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.startswith("Error: cannot open the task database:"), result.stderr
        assert "Traceback" not in result.stderr
        # the long-lived process retries for db_retry_s, then gets a clear error
        with pytest.raises(
            DatabaseError, match="the task database is unreachable: could not record a new add task"
        ):
            enqueue_task("add", 7, 8, description="while down", runtime=runtime)
    finally:
        proxy.up()
    rows = _direct_store(server_db).find(limit=None)
    assert [(r.id, r.description) for r in rows] == [(2, "while up"), (first, "test task")]
    assert sorted(project.redis.client().lrange("rq:queue:default", 0, -1)) == [b"1", b"2"]


def test_a_lost_commit_reply_is_neither_repeated_nor_misreported(
    proxy: TcpProxy,
    server_db: ServerDatabase,  # noqa: F811
) -> None:
    store = TaskStore(get_engine(proxy.url_for(server_db.url_string())), retry_s=20)
    kept = store.insert(name="add", description="d", queue="default", args=[], kwargs={}, timeout_s=5)
    assert store.mark_running(kept.id, "h:1")

    # PostgreSQL runs a single-statement write in autocommit: the statement is its commit
    update_commit = b"UPDATE tasks" if server_db.backend == "postgresql" else b"COMMIT"
    insert_commit = b"INSERT INTO tasks" if server_db.backend == "postgresql" else b"COMMIT"
    proxy.drop_reply_after(update_commit)
    assert store.mark_finished(kept.id, {"result": 1})  # it landed: True, though the reply was lost
    assert not proxy.armed and proxy.cuts == 1
    row = _direct_store(server_db).get(kept.id)
    assert (row.status, row.result) == ("finished", {"result": 1})

    proxy.drop_reply_after(insert_commit)
    record = store.insert(name="add", description="once", queue="default", args=[], kwargs={}, timeout_s=5)
    assert not proxy.armed and proxy.cuts == 2
    with _direct_store(server_db).engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Task.__table__)).scalar_one()
    assert count == 2  # not inserted twice
    assert _direct_store(server_db).get(record.id).description == "once"


def test_progress_during_an_outage_is_skipped_not_retried(
    proxy: TcpProxy,
    server_db: ServerDatabase,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # progress is advisory: the task must not stall for db_retry_s on a progress report
    store = TaskStore(get_engine(proxy.url_for(server_db.url_string())), retry_s=120)
    task = store.insert(name="add", description="d", queue="default", args=[], kwargs={}, timeout_s=5)
    assert store.mark_running(task.id, "h:1")
    proxy.down()
    try:
        with caplog.at_level("WARNING", logger="rqjobs.store"):
            assert store.set_progress(task.id, 50, "half way") is False
        assert [r.getMessage().split(":")[0] for r in caplog.records] == [
            f"progress of task {task.id} not recorded"
        ]
    finally:
        proxy.up()
    assert store.set_progress(task.id, 60, "on again")
    assert _direct_store(server_db).get(task.id).progress == 60


def test_a_worker_whose_database_is_cut_takes_no_jobs_until_it_is_back(
    project: Project,
    proxy: TcpProxy,
    server_db: ServerDatabase,  # noqa: F811
) -> None:
    from rqjobs.hostpid import host_pid
    from rqjobs.keys import liveness_key, worker_state_key
    from tests.faults import kill_session, stop

    _configure(project, proxy, server_db, retry_s=2)
    redis = project.redis.client()  # type: ignore[union-attr]
    worker = project.start_worker()
    try:
        label = host_pid(worker.pid)
        wait_for(lambda: redis.exists(liveness_key(label)), timeout=60, message="the worker's liveness key")
        proxy.down()
        project.env = {"RQJOBS_DATABASE_URL": server_db.url_string()}  # the test enqueues directly
        ids = [project.enqueue("add", "--a", str(n), "--b", "1", description=f"cut {n}") for n in range(3)]
        project.env = {}
        state = wait_for(lambda: redis.get(worker_state_key(label)), timeout=60, message="the pause")
        assert state == b"store failing"
        # nothing was taken and failed: every job waits in Redis, every row is still queued
        assert sorted(redis.lrange("rq:queue:default", 0, -1)) == sorted(str(i).encode() for i in ids)
        assert [_direct_store(server_db).get(i).status for i in ids] == ["queued"] * 3
        assert redis.zcard("rq:failed:default") == 0
        log = (project.root / "worker.log").read_text()
        assert "the task database is failing" in log and "takes no jobs until the database answers" in log
        proxy.up()
        for task_id in ids:
            wait_for(
                lambda t=task_id: _direct_store(server_db).get(t).status == "finished",
                timeout=60,
                message=f"task {task_id} to run once the database is back",
            )
        assert not redis.exists(worker_state_key(label))
        assert [_direct_store(server_db).get(i).attempts for i in ids] == [1, 1, 1]
    finally:
        project.env = {}
        stop(worker)
        kill_session(worker)


def test_deleting_the_sqlite_wal_under_a_worker_does_not_burn_the_queue(project: Project) -> None:
    """Issue 11 point 8: "disk I/O error" on every new connection; the worker pauses, and
    the database heals once no connection holds the deleted file (the worker lets go of its
    own), then the queue is worked off."""
    from rqjobs import enqueue_task
    from rqjobs.hostpid import host_pid
    from rqjobs.keys import liveness_key, worker_state_key
    from rqjobs.store.engine import forget_engines
    from tests.faults import kill_session, stop

    redis = project.redis.client()  # type: ignore[union-attr]
    worker = project.start_worker()
    try:
        label = host_pid(worker.pid)
        first = project.enqueue("add", "--a", "1", "--b", "1")
        wait_for(lambda: project.row(first).status == "finished", timeout=60, message="the first task")
        # the test's own pooled connection, opened before the deletion, goes on working
        runtime = project.runtime()
        wal = project.root / "tasks.sqlite3-wal"
        assert wal.exists()
        wal.unlink()
        ids = [
            enqueue_task("add", n, 1, description=f"after the wal went {n}", runtime=runtime).id
            for n in range(3)
        ]
        state = wait_for(lambda: redis.get(worker_state_key(label)), timeout=60, message="the pause")
        assert state == b"store failing"
        assert sorted(redis.lrange("rq:queue:default", 0, -1)) == sorted(str(i).encode() for i in ids)
        assert redis.zcard("rq:failed:default") == 0
        assert [runtime.store.get(i).status for i in ids] == ["queued"] * 3
        log = (project.root / "worker.log").read_text()
        assert "disk I/O error" in log and "goes back to its queue unrun" in log
        assert redis.exists(liveness_key(label))  # paused, still alive
        forget_engines()  # the test lets go of its connection too: SQLite can recover

        def finished() -> bool:
            # a new process each time: a connection that met the error must not linger here
            shown = project.rqjobs("status", "--finished", "--json")
            return shown.returncode == 0 and {r["id"] for r in json.loads(shown.stdout)} >= {first, *ids}

        wait_for(
            finished, timeout=60, interval=0.5, message="the queue to be worked off once the database heals"
        )
        assert "the task database answers again" in (project.root / "worker.log").read_text()
        assert not redis.exists(worker_state_key(label))
    finally:
        stop(worker)
        kill_session(worker)
