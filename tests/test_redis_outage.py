"""Redis outages, for real: a private redis-server stopped, hung (SIGSTOP) and restarted.

Each test owns its redis-server (the session's one is shared by other tests), with
append-only persistence like the embedded default, so a restart keeps the queued jobs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project, RedisServer, wait_for
from tests.faults import CHAOS_MODULES, FAST_RECONCILE, reconcile, stop, wait_status
from tests.helpers import configure


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture
def outage_project(project: Project, own_redis: RedisServer) -> Project:
    project.redis = own_redis
    configure(project, tasks_modules=CHAOS_MODULES, redis_url=own_redis.url, **FAST_RECONCILE)
    return project


def test_worker_rides_out_a_redis_restart_and_tasks_end_truthfully(
    outage_project: Project, own_redis: RedisServer
) -> None:
    project = outage_project
    marker = project.root / "horse.pid"
    in_flight = project.enqueue(
        "sleep-for", "--seconds", "3", "--marker", str(marker), description="in flight"
    )
    worker = project.start_worker()
    try:
        wait_for(marker.exists, message="the task to start")
        own_redis.stop()  # SIGTERM: redis-server writes its append-only file and exits

        # the task goes on and records its end in SQL; RQ's bookkeeping fails, the row stands
        row = wait_status(project, in_flight, ("finished", "failed"), timeout=30)
        assert row.status == "finished" and row.result == {"result": "slept"}

        # enqueue while Redis is down: a short error, exit 1, the row failed with the reason
        started = time.monotonic()
        result = project.rqjobs(
            "enqueue", "add", "--description", "during the outage", "--a", "1", "--b", "1"
        )
        elapsed_s = time.monotonic() - started
        assert result.returncode == 1 and result.stdout == ""
        assert "Redis is unreachable" in result.stderr and "Traceback" not in result.stderr
        assert elapsed_s < 15
        (refused,) = project.store().find(statuses=["failed"], limit=None)
        assert "could not put the job in Redis" in refused.log

        time.sleep(2)  # the worker keeps trying meanwhile; it must not have quit
        assert worker.poll() is None
        own_redis.start()

        after = project.enqueue("add", "--a", "20", "--b", "22", description="after the outage")
        row = wait_status(project, after, ("finished",), timeout=60)
        assert row.result == {"result": 42}
        assert worker.poll() is None
    finally:
        assert stop(worker) == 0
    log = (project.root / "worker.log").read_text()
    assert "starting it again once Redis answers" in log
    row = project.row(in_flight)
    assert row.status == "finished" and row.attempts == 1 and row.log is None  # never flipped
    assert reconcile(project) == []
    from rq.registry import StartedJobRegistry

    queue = project.runtime().queue("default")
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []  # released after the outage


def test_a_task_killed_while_redis_is_down_is_recorded_once_redis_is_back(
    outage_project: Project, own_redis: RedisServer
) -> None:
    project = outage_project
    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "4", "--marker", str(marker), "--retries", "1")
    worker = project.start_worker()
    try:
        wait_for(marker.exists, message="the task to start")
        horse = int(marker.read_text())
        marker.unlink()
        own_redis.stop()
        os.kill(horse, signal.SIGKILL)  # e.g. the OOM killer, while the worker cannot reach Redis
        time.sleep(2)
        assert project.row(task_id).status == "running"  # nobody can know more yet
        own_redis.start()
        # the worker settles the run it watched, then runs the retry
        row = wait_status(project, task_id, ("finished",), timeout=60)
    finally:
        assert stop(worker) == 0
    assert row.attempts == 2
    assert "--- attempt 1 lost" in row.log
    assert "lost Redis while this attempt ran: its task process killed by SIGKILL" in row.log
    assert "The job was queued again." in row.log


def test_enqueue_to_a_hung_redis_fails_in_bounded_time(
    outage_project: Project, own_redis: RedisServer
) -> None:
    """A server that accepts connections but never answers (SIGSTOP): bounded by the socket timeout."""
    project = outage_project
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = project.rqjobs("enqueue", "add", "--description", "hung", "--a", "1", "--b", "2", timeout=60)
        elapsed_s = time.monotonic() - started
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    assert result.returncode == 1, result.stderr
    assert "Redis is unreachable" in result.stderr and "Timeout" in result.stderr
    # socket_timeout (5 s) for the enqueue, once more for the "did it land?" check, and start-up
    assert elapsed_s < 20
    (row,) = project.store().find(limit=None)
    assert row.status == "failed" and "could not put the job in Redis" in row.log
    # nothing was written before the first read timed out: the job did not land later either
    project.work()
    assert project.row(row.id).status == "failed"
    assert not own_redis.client().exists(f"rq:job:{row.id}")


def test_burst_worker_carries_on_after_a_short_outage(
    outage_project: Project, own_redis: RedisServer
) -> None:
    project = outage_project
    ids = [project.enqueue("sleep-for", "--seconds", "0.5") for _ in range(6)]
    worker = project.start_worker("--burst")
    try:
        wait_status(project, ids[0], ("finished",), timeout=30)
        own_redis.stop()
        time.sleep(2)
        own_redis.start()
        assert worker.wait(90) == 0
    finally:
        stop(worker)
    rows = [project.row(i) for i in ids]
    assert [r.status for r in rows] == ["finished"] * 6, [(r.id, r.status, r.log) for r in rows]


def test_embedded_redis_keeps_queued_jobs_across_its_restart(project: Project) -> None:
    project.write_config(
        database_url=f"sqlite:///{project.root / 'tasks.sqlite3'}",
        tasks_modules=["sample_tasks"],
        data_dir=str(project.root / "d"),
    )
    try:
        ids = [project.enqueue("add", "--a", str(n), "--b", "1") for n in range(3)]
        assert project.rqjobs("redis", "stop", check=True).stderr.strip() == "stopped"
        assert "not running" in project.rqjobs("redis", "status", check=True).stdout
        project.work()  # starts the embedded server again, which loads its append-only file
        assert [project.row(i).result for i in ids] == [{"result": n + 1} for n in range(3)]
        assert "running" in project.rqjobs("redis", "status", check=True).stdout
    finally:
        project.rqjobs("redis", "stop")
