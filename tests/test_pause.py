"""Pausing and resuming queues (issue 14), with real workers, Redis and databases.

A pause lives in SQL; workers skip a paused queue within about a second
(``rqjobs.worker.flow.PAUSE_REFRESH_S``), running jobs finish, queued jobs stay queued in
the row and in Redis, and a burst worker treats a paused queue as empty.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rqjobs.worker.flow import PAUSE_REFRESH_S
from tests.conftest import Project, RedisServer, wait_for
from tests.faults import FAST_RECONCILE, kill_session, lines, stop, wait_status
from tests.helpers import configure

#: how long a job enqueued into a paused queue is watched, to see it is not taken
STAYS_QUEUED_S = 3.0


def _queued_in_redis(project: Project, queue: str, task_id: int) -> bool:
    client = project.redis.client()  # type: ignore[union-attr]
    return str(task_id).encode() in client.lrange(f"rq:queue:{queue}", 0, -1)


def _stays_queued(project: Project, queue: str, task_id: int) -> None:
    """The row stays queued and its job in its queue for STAYS_QUEUED_S, with no attempt."""
    deadline = time.monotonic() + STAYS_QUEUED_S
    while time.monotonic() < deadline:
        row = project.row(task_id)
        assert row.status == "queued" and row.attempts == 0, row
        time.sleep(0.2)
    assert _queued_in_redis(project, queue, task_id)


def test_pause_resume_cli_api_and_status(project: Project) -> None:
    result = project.rqjobs("pause", "mail", "reports")
    assert result.returncode == 0, result.stderr
    assert "paused mail, reports" in result.stderr and result.stdout == ""
    again = project.rqjobs("pause", "mail", "--json", check=True)
    assert "already paused" in again.stderr
    import json

    listed = json.loads(again.stdout)
    assert [p["queue"] for p in listed] == ["mail", "reports"]
    assert all(p["paused_by"] and p["paused_at"] for p in listed)

    status = project.rqjobs("status", check=True)
    line = next(x for x in status.stderr.splitlines() if x.startswith("paused: "))
    assert "mail (since " in line and "reports (since " in line and " by " in line

    from rqjobs import paused_queues, resume_queues

    project.settings()
    assert [p.queue for p in paused_queues()] == ["mail", "reports"]
    assert resume_queues(["reports", "nope"]) == ["reports"]
    assert project.rqjobs("resume", "--all", check=True).stderr.startswith("resumed mail")
    assert "paused:" not in project.rqjobs("status", check=True).stderr


def test_bad_input_is_refused_with_exit_2(project: Project) -> None:
    for args in (["pause"], ["resume"], ["pause", "bad queue!"], ["pause", "x" * 201]):
        result = project.rqjobs(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip()
    assert project.rqjobs("pause", "--json", check=False).returncode == 2
    from rqjobs.flow import paused_queues

    project.settings()
    assert paused_queues() == []


def test_pause_all_covers_configured_redis_and_row_queues(project: Project) -> None:
    configure(project, default_queue="main")
    queued = project.enqueue("add", "--a", "1", "--b", "2", "--queue", "rowq")
    assert _queued_in_redis(project, "rowq", queued)
    project.redis.client().sadd("rq:queues", "rq:queue:redisonly")  # type: ignore[union-attr]
    result = project.rqjobs("pause", "--all", check=True)
    assert "paused main, redisonly, rowq" in result.stderr, result.stderr
    assert "resumed main, redisonly, rowq" in project.rqjobs("resume", "--all", check=True).stderr


def test_burst_worker_treats_a_paused_queue_as_empty(project: Project) -> None:
    free = project.enqueue("add", "--a", "1", "--b", "1", "--queue", "free")
    held = project.enqueue("add", "--a", "2", "--b", "2", "--queue", "mail")
    project.rqjobs("pause", "mail", check=True)

    result = project.work("free", "mail")
    assert project.row(free).status == "finished"
    row = project.row(held)
    assert row.status == "queued" and row.attempts == 0
    assert _queued_in_redis(project, "mail", held)
    assert "paused queues skipped: mail" in result.stderr

    # every queue paused: the burst worker has nothing to do and says done
    project.work("mail")
    assert project.row(held).status == "queued"

    project.rqjobs("resume", "mail", check=True)
    project.work("free", "mail")
    assert project.row(held).status == "finished" and project.row(held).attempts == 1


def test_running_worker_stops_taking_within_a_second_and_resumes(project: Project) -> None:
    configure(project, **FAST_RECONCILE)
    first = project.enqueue("add", "--a", "1", "--b", "1")
    worker = project.start_worker()
    try:
        wait_status(project, first, ("finished",))
        project.rqjobs("pause", "default", check=True)
        time.sleep(PAUSE_REFRESH_S + 0.2)  # the promised window: "within a second"
        held = project.enqueue("add", "--a", "2", "--b", "3")
        _stays_queued(project, "default", held)
        assert worker.poll() is None
        # idle while every queue is paused, yet alive: its liveness key stays fresh
        client = project.redis.client()  # type: ignore[union-attr]
        assert any(k.startswith(b"rqjobs:worker:") for k in client.keys("rqjobs:worker:*"))

        project.rqjobs("resume", "default", check=True)
        row = wait_status(project, held, ("finished",), timeout=30)
        assert row.result == {"result": 5} and row.attempts == 1
    finally:
        stop(worker)
    log = (project.root / "worker.log").read_text()
    assert "paused queues skipped: default" in log and "Traceback" not in log


def test_job_taken_by_a_worker_blocked_before_the_pause_is_put_back(project: Project) -> None:
    """A worker blocked on the queue (nothing paused) when the pause comes, and the job
    arriving right after the pause: the worker reads the paused set afresh, puts it back."""
    first = project.enqueue("add", "--a", "1", "--b", "1")
    worker = project.start_worker()
    try:
        wait_status(project, first, ("finished",))
        time.sleep(PAUSE_REFRESH_S + 0.2)  # its cached paused set is stale now: it is blocked
        project.rqjobs("pause", "default", check=True)
        held = project.enqueue("add", "--a", "2", "--b", "3")
        _stays_queued(project, "default", held)
        project.rqjobs("resume", "default", check=True)
        wait_status(project, held, ("finished",), timeout=30)
    finally:
        stop(worker)


def test_a_running_job_finishes_during_a_pause(project: Project) -> None:
    marker = project.root / "started"
    running = project.enqueue("sleep-for", "--seconds", "2", "--marker", str(marker))
    worker = project.start_worker()
    try:
        wait_for(marker.exists, message="the task to start")
        project.rqjobs("pause", "default", check=True)
        row = wait_status(project, running, ("finished", "failed"), timeout=30)
        assert row.status == "finished" and row.result == {"result": "slept"}
        later = project.enqueue("add", "--a", "1", "--b", "1")
        _stays_queued(project, "default", later)
    finally:
        stop(worker)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


def test_pause_survives_a_redis_restart(project: Project, own_redis: RedisServer) -> None:
    project.redis = own_redis
    configure(project, redis_url=own_redis.url, **FAST_RECONCILE)
    project.rqjobs("pause", "default", check=True)
    held = project.enqueue("add", "--a", "4", "--b", "4")
    worker = project.start_worker()
    try:
        wait_for(
            lambda: "paused queues skipped: default" in (project.root / "worker.log").read_text(),
            message="the worker to see the pause",
        )
        seen = len(lines(project.root / "worker.log"))
        own_redis.stop()  # append-only file: the queued job survives, the pause is in SQL anyway
        wait_for(
            lambda: any("Redis" in x for x in lines(project.root / "worker.log")[seen:]),
            message="the worker to notice the outage",
        )
        own_redis.start()
        _stays_queued(project, "default", held)
        assert worker.poll() is None
        project.rqjobs("resume", "default", check=True)
        row = wait_status(project, held, ("finished",), timeout=60)
        assert row.result == {"result": 8}
    finally:
        stop(worker)
        kill_session(worker)


def test_schedule_list_shows_a_paused_queue(project: Project) -> None:
    text = project.config_path.read_text()
    project.config_path.write_text(
        text + '[[schedule]]\nname = "tick"\ntask = "add"\nevery = "1h"\nqueue = "mail"\n'
        "kwargs = { a = 1, b = 2 }\n"
    )
    import json

    project.rqjobs("pause", "mail", check=True)
    (view,) = json.loads(project.rqjobs("schedule", "list", "--json", check=True).stdout)
    assert view["queue"] == "mail" and view["queue_paused"] is True
    assert view["state"] == "queue mail paused"
    table = project.rqjobs("schedule", "list", check=True).stdout
    assert "queue mail paused" in table


def test_pause_holds_on_every_database(project: Project, db_url: str) -> None:
    """The pause is SQL: the worker reads it on SQLite, PostgreSQL and MariaDB alike."""
    configure(project, database_url=db_url)
    held = project.enqueue("add", "--a", "3", "--b", "4", "--queue", "mail")
    free = project.enqueue("add", "--a", "1", "--b", "1")
    assert "paused mail" in project.rqjobs("pause", "mail", check=True).stderr
    project.work("default", "mail")
    assert project.row(free).status == "finished"
    assert project.row(held).status == "queued" and project.row(held).attempts == 0
    assert "paused: mail (since " in project.rqjobs("status", check=True).stderr
    project.rqjobs("resume", "mail", check=True)
    project.work("default", "mail")
    assert project.row(held).status == "finished"


@pytest.fixture
def proxy(server_db: Any) -> Iterator[Any]:
    from tests.support.tcp_proxy import TcpProxy

    upstream = server_db.url
    proxy = TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432).start()
    try:
        yield proxy
    finally:
        proxy.close()


def test_worker_keeps_the_last_known_pause_while_the_database_is_down(
    project: Project, proxy: Any, server_db: Any
) -> None:
    """The paused set cannot be read: the worker goes on skipping the queue, not taking it."""
    project.write_config(
        database_url=proxy.url_for(server_db.url_string()),
        redis_url=project.redis.url,  # type: ignore[union-attr]
        tasks_modules=["sample_tasks"],
        db_retry_s=1,
    )
    project.rqjobs("pause", "default", check=True)
    held = project.enqueue("add", "--a", "5", "--b", "5")
    worker = project.start_worker()
    log_path = project.root / "worker.log"
    try:
        wait_for(lambda: "paused queues skipped: default" in log_path.read_text(), message="pause seen")
        proxy.down()
        wait_for(lambda: "cannot read the paused queues" in log_path.read_text(), message="read failing")
        deadline = time.monotonic() + STAYS_QUEUED_S
        while time.monotonic() < deadline:
            assert _queued_in_redis(project, "default", held)
            time.sleep(0.2)
        proxy.up()
        project.rqjobs("resume", "default", check=True)
        row = wait_status(project, held, ("finished",), timeout=60)
        assert row.result == {"result": 10}
        assert "keeping the last known: default" in log_path.read_text()
    finally:
        stop(worker)
        kill_session(worker)
