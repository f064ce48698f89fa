"""Unique tasks (issue 14): one live row per key, enforced by the database.

Store tests run on every configured database (``db_url``); the command-line tests use a
project whose database is each of them in turn (``db_project``), real ``rqjobs``
subprocesses and real burst workers. The race is real: several processes, each with its
engine connected and its tasks loaded, wait for one barrier file and then enqueue the
same key at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from rqjobs.status import TaskStatus
from rqjobs.store.engine import get_engine
from rqjobs.store.repository import TaskStore, UniqueKeyTaken
from tests.conftest import TESTS_DIR, Project, wait_for

UNIQUE_TASKS = TESTS_DIR / "support" / "unique_tasks.py"


@pytest.fixture
def store(db_url: str) -> TaskStore:
    return TaskStore(get_engine(db_url), retry_s=5)


@pytest.fixture
def db_project(project: Project, db_url: str) -> Project:
    """The test project, its rows in each configured database in turn."""
    assert project.redis is not None
    shutil.copy(UNIQUE_TASKS, project.root / "unique_tasks.py")
    project.write_config(
        database_url=db_url,
        redis_url=project.redis.url,
        tasks_modules=["sample_tasks", "unique_tasks"],
    )
    return project


def new_task(store: TaskStore, key: str | None = "k1", **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "name": "add",
        "description": "a unique task",
        "queue": "default",
        "args": [1, 2],
        "kwargs": {},
        "timeout_s": 60,
        "unique_key": key,
    }
    values.update(overrides)
    record, _created = store.insert_unique(**values)
    return record


def holding(store: TaskStore, task_id: int) -> str | None:
    """The row's ``unique_active`` (internal: not on a TaskRecord)."""
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT unique_active FROM tasks WHERE id = :i"), {"i": task_id}).scalar()


# -- the store ------------------------------------------------------------------------------


def test_second_insert_of_a_live_key_returns_the_holder(store: TaskStore) -> None:
    first, created = store.insert_unique(
        name="add", description="d", queue="default", args=[], kwargs={}, timeout_s=60, unique_key="k1"
    )
    assert created and not first.existing and first.unique_key == "k1"
    again, created = store.insert_unique(
        name="add", description="other", queue="default", args=[9], kwargs={}, timeout_s=60, unique_key="k1"
    )
    assert not created and again.existing and again.id == first.id and again.description == "d"
    other = new_task(store, key="k2")
    assert other.id != first.id
    assert len(store.find(limit=None)) == 2
    assert holding(store, first.id) == "k1" and holding(store, other.id) == "k2"
    assert store.live_holder("k1") == store.get(first.id)
    assert store.live_holder("nope") is None


@pytest.mark.parametrize(
    "finish",
    [
        pytest.param(lambda s, i: s.mark_running(i, "w") and s.mark_finished(i, {"ok": 1}), id="finished"),
        pytest.param(lambda s, i: s.mark_running(i, "w") and s.mark_attempt_failed(i, "boom\n"), id="failed"),
        pytest.param(lambda s, i: s.mark_enqueue_failed(i, "redis down\n"), id="enqueue-failed"),
        pytest.param(lambda s, i: s.mark_canceled(i, ("queued",), "canceled\n"), id="canceled-waiting"),
        pytest.param(
            lambda s, i: s.mark_running(i, "w") and s.mark_canceled(i, ("running",), "stopped\n"),
            id="canceled-running",
        ),
        pytest.param(
            lambda s, i: s.update_if(i, {"status": "queued"}, {"status": "failed", "progress": 100}),
            id="reconcile-failed",
        ),
        pytest.param(
            lambda s, i: (
                s.mark_running(i, "w")
                and s.update_if(i, {"status": "running", "attempts": 1}, {"status": "finished"})
            ),
            id="reconcile-finished",
        ),
    ],
)
def test_every_final_transition_gives_the_key_up(store: TaskStore, finish: Any) -> None:
    row = new_task(store)
    assert finish(store, row.id)
    final = store.get(row.id)
    assert final.status in ("finished", "failed", "canceled")
    assert final.unique_key == "k1"  # history keeps it
    assert holding(store, row.id) is None
    assert store.live_holder("k1") is None
    fresh = new_task(store)
    assert fresh.id != row.id and not fresh.existing and holding(store, fresh.id) == "k1"


def test_live_transitions_keep_the_key(store: TaskStore) -> None:
    row = new_task(store)
    assert store.mark_running(row.id, "w")
    assert holding(store, row.id) == "k1"
    assert store.mark_attempt_failed(row.id, "retry\n", will_retry=True)  # back to queued
    assert store.get(row.id).status == "queued" and holding(store, row.id) == "k1"
    assert store.mark_running(row.id, "w")
    # reconcile: worker died, retries remain
    assert store.update_if(row.id, {"status": "running"}, {"status": "queued", "scheduled_for": None})
    assert holding(store, row.id) == "k1"
    assert new_task(store).existing


def test_retry_takes_the_key_back_or_refuses(store: TaskStore) -> None:
    row = new_task(store)
    assert store.mark_enqueue_failed(row.id, "down\n")
    assert store.mark_requeued(row.id, "retried\n", from_statuses=("failed", "canceled"))
    assert store.get(row.id).status == "queued" and holding(store, row.id) == "k1"
    assert new_task(store).id == row.id  # live again: holds the key
    assert store.mark_canceled(row.id, ("queued",), "canceled\n")
    other = new_task(store)
    assert other.id != row.id
    with pytest.raises(UniqueKeyTaken) as caught:
        store.mark_requeued(row.id, "retried again\n", from_statuses=("failed", "canceled"))
    assert caught.value.holder is not None and caught.value.holder.id == other.id
    unchanged = store.get(row.id)
    assert unchanged.status == "canceled" and "retried again" not in (unchanged.log or "")
    assert holding(store, row.id) is None and holding(store, other.id) == "k1"


def test_a_redelivered_failed_row_runs_without_a_key_someone_else_holds(store: TaskStore) -> None:
    row = new_task(store)
    assert store.mark_running(row.id, "w") and store.mark_attempt_failed(row.id, "boom\n")
    other = new_task(store)
    # at-least-once delivery: RQ runs the failed row's job again; the row must say running
    assert store.mark_running(row.id, "w2")
    assert store.get(row.id).status == "running"
    assert holding(store, row.id) is None and holding(store, other.id) == "k1"
    assert store.mark_finished(row.id, {"ok": 1})
    # with nobody holding it, a re-delivered row takes its key back
    assert store.mark_canceled(other.id, ("queued",), "x\n")
    third = new_task(store)
    assert store.mark_enqueue_failed(third.id, "x\n")
    assert store.mark_running(third.id, "w3") and holding(store, third.id) == "k1"


def test_rows_without_a_key_are_unaffected(store: TaskStore) -> None:
    a = store.insert(name="add", description="d", queue="q", args=[], kwargs={}, timeout_s=5)
    b = store.insert(name="add", description="d", queue="q", args=[], kwargs={}, timeout_s=5)
    for task_id in (a.id, b.id):
        assert store.mark_enqueue_failed(task_id, "x\n")
        assert store.mark_requeued(task_id, "r\n", from_statuses=("failed",))
        assert holding(store, task_id) is None


# -- the command line and the API, on each database ----------------------------------------

RACER = """
import os, sys, time
barrier, argv = sys.argv[1], sys.argv[2:]
from rqjobs.config import load_settings
from rqjobs.runtime import get_runtime
from rqjobs.tasks.registry import load_task_modules
from rqjobs.cli import main
settings = load_settings("rqjobs.toml", env={})
load_task_modules(settings)
get_runtime(settings).store.get(0)  # engine made, schema checked, a connection pooled
open(barrier + "." + str(os.getpid()), "w").close()
while not os.path.exists(barrier):
    time.sleep(0.001)
main(argv)
"""


def test_racing_processes_make_one_row_and_all_print_its_id(db_project: Project, tmp_path: Path) -> None:
    barrier = tmp_path / "go"
    args = ["enqueue", "add", "-d", "race", "--a", "1", "--b", "2", "--unique-key", "nightly-report"]
    env = {**os.environ, **db_project.env}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), *args],
            cwd=db_project.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs: list[tuple[str, str]] = []
    try:
        wait_for(
            lambda: len(list(tmp_path.glob("go.*"))) == 3 or any(r.poll() is not None for r in racers),
            timeout=120,
            message="every racer ready",
        )
        early = [r for r in racers if r.poll() is not None]
        assert not early, [r.communicate() for r in early]  # a racer that died before the start
        barrier.touch()
        outputs = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
            racer.communicate()  # reap it and close its pipes
    assert [racer.returncode for racer in racers] == [0, 0, 0], outputs
    ids = {int(out.strip()) for out, _err in outputs}
    rows = db_project.store().find(limit=None)
    assert len(rows) == 1 and ids == {rows[0].id}
    assert sum("already queued as #" in err for _out, err in outputs) == 2
    assert db_project.redis is not None
    assert db_project.redis.client().llen("rq:queue:default") == 1


def test_key_is_free_again_once_the_row_finished(db_project: Project) -> None:
    first = db_project.enqueue("add", "--a", "1", "--b", "2", "--unique-key", "k")
    again = db_project.rqjobs("enqueue", "add", "-d", "x", "--a", "5", "--b", "5", "--unique-key", "k")
    assert again.returncode == 0 and int(again.stdout) == first
    assert f"already queued as #{first} (queued)" in again.stderr
    db_project.work()
    assert db_project.row(first).status == "finished"
    second = db_project.enqueue("add", "--a", "5", "--b", "5", "--unique-key", "k")
    assert second != first
    db_project.work()
    assert db_project.row(second).result == {"result": 10}


def test_a_running_row_holds_its_key(db_project: Project, tmp_path: Path) -> None:
    marker, release = tmp_path / "started", tmp_path / "release"
    args = ("--marker", str(marker), "--release", str(release), "--unique-key", "hold")
    task_id = db_project.enqueue("hold-until", *args)
    worker = db_project.start_worker("--burst")
    try:
        wait_for(marker.exists, message="the task to start")
        wait_for(lambda: db_project.row(task_id).status == "running", message="the row to say running")
        again = db_project.rqjobs("enqueue", "hold-until", "-d", "again", *args)
        assert again.returncode == 0 and int(again.stdout) == task_id
        assert f"already queued as #{task_id} (running)" in again.stderr
        release.touch()
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    assert db_project.row(task_id).status == "finished"
    assert db_project.enqueue("hold-until", *args) != task_id


def test_unique_decorator_keys_by_the_arguments(db_project: Project) -> None:
    from rqjobs import enqueue_task

    runtime = db_project.runtime()
    a = enqueue_task("sync-account", 7, description="sync", runtime=runtime)
    assert not a.existing and a.unique_key and a.unique_key.startswith("sync-account:")
    same = enqueue_task("sync-account", account=7, full=False, description="again", runtime=runtime)
    assert same.existing and same.id == a.id and same.status == "queued"
    other = enqueue_task("sync-account", 7, full=True, description="full", runtime=runtime)
    assert not other.existing and other.id != a.id
    explicit = enqueue_task("sync-account", 7, description="own key", unique_key="mine", runtime=runtime)
    assert not explicit.existing and explicit.unique_key == "mine"
    cli = db_project.rqjobs("enqueue", "sync-account", "-d", "cli", "--account", "7")
    assert cli.returncode == 0 and int(cli.stdout) == a.id and "already queued" in cli.stderr
    assert len(runtime.store.find(limit=None)) == 3
    db_project.work()
    assert {r.status for r in runtime.store.find(limit=None)} == {"finished"}
    again = enqueue_task("sync-account", 7, description="later", runtime=runtime)
    assert not again.existing and again.id not in (a.id, other.id, explicit.id)


def test_dry_run_says_whether_it_would_be_a_duplicate(db_project: Project) -> None:
    import json

    fresh = db_project.rqjobs(
        "enqueue", "add", "-d", "x", "--a", "1", "--b", "2", "--unique-key", "d", "--dry-run", "--json"
    )
    assert fresh.returncode == 0, fresh.stderr
    plan = json.loads(fresh.stdout)
    assert plan["unique_key"] == "d" and plan["duplicate_of"] is None
    task_id = db_project.enqueue("add", "--a", "1", "--b", "2", "--unique-key", "d")
    dup = db_project.rqjobs(
        "enqueue", "add", "-d", "x", "--a", "1", "--b", "2", "--unique-key", "d", "--dry-run"
    )
    assert dup.returncode == 0
    assert f"duplicate_of: {json.dumps({'id': task_id, 'status': 'queued'})}" in dup.stdout
    assert f"a duplicate of #{task_id} (queued)" in dup.stderr
    assert len(db_project.store().find(limit=None)) == 1


def test_retry_is_refused_while_another_row_holds_the_key(db_project: Project) -> None:
    failed = db_project.enqueue("fail-always", "--unique-key", "r")
    db_project.work()
    assert db_project.row(failed).status == "failed"
    holder = db_project.enqueue("add", "--a", "1", "--b", "1", "--unique-key", "r")
    refused = db_project.rqjobs("retry", str(failed))
    assert refused.returncode == 1
    assert f"task {holder} (queued) holds its unique key 'r'" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert db_project.row(failed).status == "failed"
    db_project.work()
    assert db_project.row(holder).status == "finished"
    retried = db_project.rqjobs("retry", str(failed))
    assert retried.returncode == 0, retried.stderr
    assert db_project.row(failed).status == "queued"
    dup = db_project.rqjobs("enqueue", "add", "-d", "x", "--a", "1", "--b", "1", "--unique-key", "r")
    assert int(dup.stdout) == failed and "already queued" in dup.stderr


@pytest.mark.parametrize("key", ["", "   ", "k" * 201, "bad\udcffkey"])
def test_bad_key_exits_2_and_writes_no_row(project: Project, key: str) -> None:
    if "\udcff" in key:
        from rqjobs import InvalidInput, enqueue_task

        with pytest.raises(InvalidInput, match="unique key"):
            enqueue_task("add", 1, 2, description="x", unique_key=key, runtime=project.runtime())
    else:
        result = project.rqjobs("enqueue", "add", "-d", "x", "--a", "1", "--b", "2", "--unique-key", key)
        assert result.returncode == 2
        assert "unique key" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""
    assert project.store().find(limit=None) == []


def test_a_failed_enqueue_gives_the_key_up(project: Project) -> None:
    from rqjobs import enqueue_task
    from rqjobs.exceptions import EnqueueFailed

    project.write_config(
        database_url=f"sqlite:///{project.root / 'tasks.sqlite3'}",
        redis_url="redis://127.0.0.1:1/0",
        tasks_modules=["sample_tasks"],
    )
    runtime = project.runtime()
    with pytest.raises(EnqueueFailed):
        enqueue_task("add", 1, 2, description="x", unique_key="gone", runtime=runtime)
    (row,) = runtime.store.find(limit=None)
    assert row.status == TaskStatus.FAILED.value and runtime.store.live_holder("gone") is None


def test_a_scheduled_row_holds_its_key(project: Project) -> None:
    from rqjobs import enqueue_task

    runtime = project.runtime()
    later = enqueue_task("add", 1, 2, description="later", delay_s=3600, unique_key="s", runtime=runtime)
    assert later.status == "scheduled"
    assert enqueue_task("add", 1, 2, description="now", unique_key="s", runtime=runtime).id == later.id
