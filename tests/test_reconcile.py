"""Reconcile: rows of dead workers, jobs lost between the commit and Redis, RQ's verdicts.

Every fault is real: workers are SIGKILLed, a machine is a PID namespace that is killed
whole, Redis loses its data (FLUSHALL), and two reconcile processes race. Where a state
is built by hand (a job that RQ failed while the row's write was lost) it is built with
RQ's own API, as a worker would have left it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import Project, wait_for
from tests.faults import (
    CHAOS_MODULES,
    FAST_RECONCILE,
    backdate,
    dead_label,
    kill_session,
    lines,
    pid_alive,
    reconcile,
    redis_known_for,
    start_in_rq,
    stop,
    wait_status,
)
from tests.helpers import configure


@pytest.fixture
def fast(project: Project) -> Project:
    configure(project, tasks_modules=CHAOS_MODULES, **FAST_RECONCILE)
    return project


def _rq(project: Project) -> tuple[object, object]:
    runtime = project.runtime()
    return runtime, runtime.queue("default")


# -- a worker dies ---------------------------------------------------------------------------


def concurrent_reconciles(project: Project, *args: str, count: int = 2) -> list[dict]:
    """Run ``rqjobs reconcile --json`` ``count`` times at once; every change they report."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rqjobs", "reconcile", "--json", *args],
            cwd=project.root,
            env={**os.environ, **project.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * count, outputs
    return [change for out, _err in outputs for change in json.loads(out)]


def test_killed_worker_takes_its_horse_along_and_the_row_fails(fast: Project) -> None:
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    marker = fast.root / "horse.pid"
    task_id = fast.enqueue("sleep-for", "--seconds", "60", "--marker", str(marker), description="long")
    doomed = fast.start_worker(log_name="doomed.log")
    rescuer = None
    try:
        wait_for(marker.exists, message="the task to start")
        horse = int(marker.read_text())
        assert fast.row(task_id).status == "running"
        os.kill(doomed.pid, signal.SIGKILL)  # the worker parent only: the horse is in its own group
        doomed.wait(10)
        killed_at = time.monotonic()
        # PR_SET_PDEATHSIG: the horse does not outlive its worker
        wait_for(lambda: not pid_alive(horse), timeout=10, message="the horse to die with its worker")

        rescuer = fast.start_worker(log_name="rescuer.log")
        assert fast.redis is not None
        client = fast.redis.client()
        wait_for(
            lambda: client.exists(f"rqjobs:worker:{socket.gethostname()}:{rescuer.pid}"),
            timeout=60,
            message="the rescuer to be up",
        )
        ready_at = time.monotonic()
        row = wait_status(fast, task_id, ("failed",), timeout=60)
        # the dead worker's key is gone one TTL after the kill; the rescuer reconciles at once
        # and then every interval: a few intervals of slack, not RQ's 90 s heartbeat
        ttl_s, interval_s = FAST_RECONCILE["worker_liveness_ttl_s"], FAST_RECONCILE["reconcile_interval_s"]
        bound = max(killed_at + ttl_s, ready_at) + 3 * interval_s + 3.0
        assert time.monotonic() <= bound, (
            f"failed {time.monotonic() - ready_at:.1f} s after the rescuer started"
        )
    finally:
        kill_session(doomed)
        if rescuer is not None:
            assert stop(rescuer) == 0
    assert row.attempts == 1
    assert "--- attempt 1 worker died" in row.log
    assert f"the worker {row.worker} that ran this attempt is gone" in row.log
    assert f"its process {doomed.pid} on this machine no longer exists" in row.log
    assert "No retries left" in row.log
    runtime, queue = _rq(fast)
    assert str(task_id) in FailedJobRegistry(queue=queue).get_job_ids()  # RQ agrees
    assert str(task_id) not in StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)
    assert "reconcile: task" in (fast.root / "rescuer.log").read_text()


def test_killed_worker_with_a_retry_left_is_requeued_and_runs_again(fast: Project) -> None:
    marker = fast.root / "horse.pid"
    task_id = fast.enqueue("sleep-for", "--seconds", "2", "--marker", str(marker), "--retries", "1")
    doomed = fast.start_worker(log_name="doomed.log")
    try:
        wait_for(marker.exists, message="the task to start")
        first_horse = int(marker.read_text())
        marker.unlink()
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
    finally:
        kill_session(doomed)
    wait_for(lambda: not pid_alive(first_horse), timeout=10, message="the horse to die")
    # nothing else runs: `rqjobs reconcile` re-queues it (once the liveness key has expired)
    changes = wait_for(lambda: reconcile(fast), timeout=30, interval=0.5, message="reconcile to act")
    assert changes == [
        {
            "task_id": task_id,
            "from": "running",
            "to": "queued",
            "action": "re-queued",
            "reason": changes[0]["reason"],
            "applied": True,
        }
    ]
    assert "died" in changes[0]["reason"]
    row = fast.row(task_id)
    assert row.status == "queued" and "The job was queued again." in row.log
    assert reconcile(fast) == []  # nothing left to do
    fast.work()
    row = fast.row(task_id)
    assert row.status == "finished", row.log
    assert row.attempts == 2
    assert int(marker.read_text()) != first_horse
    assert row.log.count("--- attempt") == 1  # the dead attempt; the second succeeded


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare with PID/UTS namespaces (root)")
def test_a_machine_that_is_gone_is_noticed_by_its_liveness_key(fast: Project) -> None:
    """A worker on another "machine" (its own hostname and PID namespace) vanishes whole."""
    marker = fast.root / "horse.pid"
    task_id = fast.enqueue("sleep-for", "--seconds", "60", "--marker", str(marker), description="remote")
    with (fast.root / "remote.log").open("w") as log:
        machine = subprocess.Popen(
            [
                "unshare",
                "--uts",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
                f"hostname ghost-machine && exec {sys.executable} -m rqjobs worker",
            ],
            cwd=fast.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        row = wait_status(fast, task_id, ("running",), timeout=30)
        assert row.worker.startswith("ghost-machine:")
        assert fast.redis.client().exists(f"rqjobs:worker:{row.worker}")
        os.kill(machine.pid, signal.SIGKILL)  # --kill-child: the namespace's init dies, and all in it
        machine.wait(10)
        changes = wait_for(lambda: reconcile(fast), timeout=30, interval=0.5, message="reconcile to act")
    finally:
        kill_session(machine)
    assert [c["task_id"] for c in changes] == [task_id]
    row = fast.row(task_id)
    assert row.status == "failed"
    assert "has not refreshed its liveness key in Redis" in row.log
    assert "machine is gone" in row.log


def test_a_dead_workers_scheduler_lock_is_freed_for_the_others(fast: Project) -> None:
    """RQ keeps a dead scheduler's lock a minute; retries with an interval would wait that long."""
    client = fast.redis.client()
    holder = fast.start_worker(log_name="holder.log")
    other = None
    try:
        owner = wait_for(lambda: client.get("rq:scheduler-lock:default"), timeout=30, message="a scheduler")
        pid = wait_for(lambda: client.hget(b"rq:scheduler:" + owner, "pid"), message="the scheduler's pid")
        scheduler_pid = int(pid)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        wait_for(
            lambda: not pid_alive(scheduler_pid), timeout=10, message="the scheduler to die with its worker"
        )
        assert client.get("rq:scheduler-lock:default") == owner  # RQ would keep it ~60 s
        other = fast.start_worker(log_name="other.log")
        task_id = fast.enqueue("add", "--a", "1", "--b", "1", "--in", "1s")
        row = wait_status(fast, task_id, ("finished",), timeout=30)
        assert client.get("rq:scheduler-lock:default") not in (None, owner)
    finally:
        kill_session(holder)
        if other is not None:
            assert stop(other) == 0
    assert row.result == {"result": 2}


def test_a_live_worker_is_left_alone(fast: Project) -> None:
    marker = fast.root / "horse.pid"
    task_id = fast.enqueue("sleep-for", "--seconds", "4", "--marker", str(marker))
    worker = fast.start_worker()
    try:
        wait_for(marker.exists, message="the task to start")
        time.sleep(3)  # longer than the liveness TTL: the key is kept fresh
        assert reconcile(fast) == []
        row = wait_status(fast, task_id, ("finished",), timeout=30)
    finally:
        assert stop(worker) == 0
    assert row.attempts == 1 and row.log is None


# -- RQ knows better than the row --------------------------------------------------------------


def test_rows_take_rqs_verdict_when_their_own_write_was_lost(fast: Project) -> None:
    """RQ failed / stopped / finished a job but the row still says running (its write was lost)."""
    from rq.job import JobStatus

    runtime, queue = _rq(fast)
    ids = [fast.enqueue("add", "--a", "1", "--b", str(n)) for n in range(3)]
    label = dead_label()
    name = f"{label}:0badc0de"
    for task_id in ids:
        start_in_rq(runtime, str(task_id), name)
        assert runtime.store.mark_running(task_id, label)
    failed, stopped, finished = (queue.fetch_job(str(i)) for i in ids)
    with runtime.redis.pipeline() as pipe:
        failed.set_status(JobStatus.FAILED, pipeline=pipe)
        failed._handle_failure("Traceback (most recent call last):\nMemoryError: out of memory", pipe)
        stopped.set_status(JobStatus.STOPPED, pipeline=pipe)
        pipe.execute()
    from rq.results import Result

    finished.set_status(JobStatus.FINISHED)
    Result.create(finished, Result.Type.SUCCESSFUL, ttl=600, return_value={"result": 3})

    planned = reconcile(fast, "--dry-run")
    assert sorted((c["task_id"], c["to"], c["applied"]) for c in planned) == [
        (ids[0], "failed", False),
        (ids[1], "canceled", False),
        (ids[2], "finished", False),
    ]
    assert all(fast.row(i).status == "running" for i in ids)  # a dry run changes nothing

    changes = reconcile(fast)
    assert sorted((c["task_id"], c["to"]) for c in changes) == [
        (ids[0], "failed"),
        (ids[1], "canceled"),
        (ids[2], "finished"),
    ]
    row = fast.row(ids[0])
    assert row.status == "failed" and "MemoryError: out of memory" in row.log
    assert "RQ recorded the job as failed" in row.log
    row = fast.row(ids[1])
    assert row.status == "canceled" and "stopped in RQ" in row.log
    row = fast.row(ids[2])
    assert row.status == "finished" and row.result == {"result": 3} and row.progress == 100
    # RQ still lists the dead worker's runs as started: the next pass removes them, to match
    from rq.registry import StartedJobRegistry

    redis_known_for(fast)  # a missing liveness key counts: the worker is dead
    released = reconcile(fast)
    assert sorted((c["task_id"], c["action"]) for c in released) == [(i, "released in Redis") for i in ids]
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []
    assert reconcile(fast) == []


# -- the row is the outbox -----------------------------------------------------------------------


def test_queued_rows_without_a_job_are_enqueued_again(fast: Project) -> None:
    """The process died between the commit and the enqueue: rows exist, jobs do not."""
    configure(fast, tasks_modules=CHAOS_MODULES, **{**FAST_RECONCILE, "reconcile_grace_s": 60.0})
    runtime = fast.runtime()
    store = runtime.store
    orphan = store.insert(
        name="add", description="orphan", queue="default", args=[2], kwargs={"b": 5}, timeout_s=30
    )
    gone = store.insert(
        name="no-such-task", description="gone", queue="default", args=[], kwargs={}, timeout_s=30
    )
    young = store.insert(
        name="add", description="young", queue="default", args=[1, 1], kwargs={}, timeout_s=30
    )
    backdate(fast, [orphan.id, gone.id], 120)

    planned = reconcile(fast, "--dry-run")
    assert sorted((c["task_id"], c["action"]) for c in planned) == [
        (orphan.id, "enqueued again"),
        (gone.id, "failed"),
    ]
    assert fast.row(orphan.id).status == "queued" and not fast.redis.client().exists(f"rq:job:{orphan.id}")

    changes = reconcile(fast)
    assert sorted((c["task_id"], c["to"]) for c in changes) == [(orphan.id, "queued"), (gone.id, "failed")]
    assert "not registered here" in fast.row(gone.id).log
    assert fast.row(young.id).status == "queued"  # within the grace period: its enqueue may be under way
    assert reconcile(fast) == []  # enqueued once, not again

    fast.work()
    assert fast.row(orphan.id).status == "finished" and fast.row(orphan.id).result == {"result": 7}
    assert fast.row(young.id).status == "queued"  # no job was ever made for it; the next pass will


def test_redis_that_lost_its_data_gets_the_jobs_back_from_the_rows(fast: Project) -> None:
    from rq.registry import ScheduledJobRegistry

    ids = [fast.enqueue("add", "--a", str(n), "--b", "1") for n in range(3)]
    later = fast.enqueue("add", "--a", "0", "--b", "0", "--in", "1h")
    fast.redis.client().flushall()
    backdate(fast, [*ids, later], 60)
    changes = reconcile(fast)
    assert sorted(c["task_id"] for c in changes) == sorted([*ids, later])
    _runtime, queue = _rq(fast)
    assert sorted(queue.get_job_ids()) == sorted(str(i) for i in ids)
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == [str(later)]  # still for later
    fast.work()
    assert [fast.row(i).result for i in ids] == [{"result": n + 1} for n in range(3)]
    assert fast.row(later).status == "scheduled"


def test_a_job_lost_by_a_worker_that_died_taking_it_is_put_back(fast: Project) -> None:
    """RQ moves a job to an intermediate list when a worker takes it; the worker died there."""
    runtime, queue = _rq(fast)
    task_id = fast.enqueue("add", "--a", "4", "--b", "4")
    runtime.redis.lmove(queue.key, queue.intermediate_queue_key)  # what dequeue did, and no more
    backdate(fast, [task_id], 60)
    assert reconcile(fast) == []  # seen once: a live worker may be between two steps
    time.sleep(FAST_RECONCILE["reconcile_grace_s"] + 0.5)
    changes = reconcile(fast)
    assert [(c["task_id"], c["action"]) for c in changes] == [(task_id, "re-queued")]
    assert queue.get_job_ids() == [str(task_id)]
    fast.work()
    assert fast.row(task_id).status == "finished"


def test_a_job_started_by_a_worker_that_died_before_the_task_began(fast: Project) -> None:
    runtime, queue = _rq(fast)
    task_id = fast.enqueue("add", "--a", "1", "--b", "2", "--retries", "0")
    start_in_rq(runtime, str(task_id), f"{dead_label()}:feedf00d")
    redis_known_for(fast)
    backdate(fast, [task_id], 60)
    changes = reconcile(fast)
    assert [(c["task_id"], c["to"]) for c in changes] == [(task_id, "queued")]
    assert queue.get_job_ids() == [str(task_id)]
    fast.work()
    row = fast.row(task_id)
    assert row.status == "finished" and row.attempts == 1  # the task itself never started before


def test_a_started_entry_left_by_a_worker_that_died_taking_the_job_goes_once_the_row_is_final(
    fast: Project,
) -> None:
    """RQ adds the execution before it forks: a worker killed then leaves an entry that the
    run which later finished the job does not remove (the chaos test's leftover)."""
    from rq.executions import Execution
    from rq.registry import StartedJobRegistry

    runtime, queue = _rq(fast)
    task_id = fast.enqueue("add", "--a", "1", "--b", "2")
    job = queue.fetch_job(str(task_id))
    dead_name = f"{dead_label()}:feedf00d"
    with runtime.redis.pipeline() as pipe:
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=dead_name)  # the job stays queued
        pipe.execute()
    registry = StartedJobRegistry(queue=queue)
    (stale,) = registry.get_job_and_execution_ids(cleanup=False)
    assert stale[0] == str(task_id)
    fast.work()  # another worker runs the job to its end; RQ removes that run's entry only
    assert fast.row(task_id).status == "finished"
    redis_known_for(fast)
    # the burst worker's own pass may have removed it already; `rqjobs reconcile` does otherwise
    changes = reconcile(fast)
    assert {(c["task_id"], c["action"]) for c in changes} <= {(task_id, "released in Redis")}
    assert registry.get_job_and_execution_ids(cleanup=False) == []
    assert fast.row(task_id).status == "finished"
    assert reconcile(fast) == []


def test_a_started_entry_whose_execution_expired_goes_once_the_row_is_final(fast: Project) -> None:
    """The chaos test's leftover with seed 284206045: an entry of a run long dead whose
    execution hash had expired (no worker refreshed it for its heartbeat TTL) named no
    worker, so the sweep could not call its run over and kept it for good."""
    from rq.executions import Execution
    from rq.registry import StartedJobRegistry

    runtime, queue = _rq(fast)
    task_id = fast.enqueue("add", "--a", "1", "--b", "2")
    job = queue.fetch_job(str(task_id))
    with runtime.redis.pipeline() as pipe:
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=f"{dead_label()}:feedf00d")
        pipe.execute()
    registry = StartedJobRegistry(queue=queue)
    (stale,) = registry.get_job_and_execution_ids(cleanup=False)
    runtime.redis.delete(f"rq:execution:{stale[0]}:{stale[1]}")  # what its TTL does, later
    fast.work()
    assert fast.row(task_id).status == "finished"
    redis_known_for(fast)
    changes = reconcile(fast)
    assert {(c["task_id"], c["action"]) for c in changes} <= {(task_id, "released in Redis")}
    assert registry.get_job_and_execution_ids(cleanup=False) == []
    assert reconcile(fast) == []


# -- jobs enqueued without rqjobs ----------------------------------------------------------------


def test_a_plain_rq_job_of_a_registered_task_gets_a_row(fast: Project) -> None:
    from rq.registry import FailedJobRegistry

    runtime, queue = _rq(fast)
    job = queue.enqueue("sample_tasks.add", 20, 22, job_id="plain-add")
    failing = queue.enqueue(
        "sample_tasks.fail_always", "plain boom", job_id="plain-fail", description="from rq"
    )
    fast.work()
    rows = {row.name: row for row in runtime.store.find(limit=None)}
    assert set(rows) == {"add", "fail-always"}
    assert rows["add"].status == "finished" and rows["add"].result == {"result": 42}
    assert rows["add"].args == [20, 22]
    assert rows["fail-always"].status == "failed" and "plain boom" in rows["fail-always"].log
    assert rows["fail-always"].description == "from rq"
    assert job.id == "plain-add"

    # requeued the way rq-dashboard does it: the same row takes the new attempt
    FailedJobRegistry(queue=queue).requeue(failing.id)
    fast.work()
    rows = runtime.store.find(limit=None)
    assert len(rows) == 2
    (again,) = [r for r in rows if r.name == "fail-always"]
    assert again.status == "failed" and again.attempts == 2 and again.log.count("plain boom") == 2
    assert reconcile(fast) == []


# -- many reconcilers at once ------------------------------------------------------------------


def _damage(project: Project, queued: int, running: int) -> tuple[list[int], list[int]]:
    """Rows whose jobs were lost, and rows whose worker died mid-run (with a retry left)."""
    runtime = project.runtime()
    store = runtime.store
    folder = str(project.root)
    lost = [
        store.insert(
            name="note-run",
            description=f"lost {n}",
            queue="default",
            args=[],
            kwargs={"token": f"lost-{n}", "folder": folder},
            timeout_s=30,
        ).id
        for n in range(queued)
    ]
    orphans = []
    label = dead_label()
    for n in range(running):
        task_id = project.enqueue("note-run", "--token", f"orphan-{n}", "--folder", folder, "--retries", "1")
        start_in_rq(runtime, str(task_id), f"{label}:aaaa{n:04d}")
        assert store.mark_running(task_id, label)
        orphans.append(task_id)
    backdate(project, lost + orphans, 60)
    redis_known_for(project)
    return lost, orphans


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "no-lock"])
def test_concurrent_reconciles_change_each_row_once(fast: Project, lock: bool) -> None:
    lost, orphans = _damage(fast, queued=25, running=5)
    changes = concurrent_reconciles(fast, *([] if lock else ["--no-lock"]))
    changed = sorted(c["task_id"] for c in changes)
    assert changed == sorted(lost + orphans)  # every row once, by one of the two
    _runtime, queue = _rq(fast)
    ids = fast.redis.client().lrange(queue.key, 0, -1)
    assert len(ids) == len(set(ids)) == len(lost) + len(orphans)  # no job enqueued twice
    fast.work()
    tokens = lines(fast.root / "done.log")
    assert sorted(tokens) == sorted([f"lost-{n}" for n in range(25)] + [f"orphan-{n}" for n in range(5)])
    for task_id in orphans:
        row = fast.row(task_id)
        assert row.status == "finished" and row.attempts == 2 and "worker died" in row.log


def test_concurrent_reconciles_on_each_database(project: Project, db_url: str) -> None:  # noqa: F811
    """The conditional updates reconcile relies on, on SQLite, PostgreSQL and MariaDB alike."""
    configure(project, tasks_modules=CHAOS_MODULES, database_url=db_url, **FAST_RECONCILE)
    lost, orphans = _damage(project, queued=6, running=3)
    changes = concurrent_reconciles(project, "--no-lock")
    assert sorted(c["task_id"] for c in changes) == sorted(lost + orphans)
    project.work()
    assert sorted(lines(project.root / "done.log")) == sorted(
        [f"lost-{n}" for n in range(6)] + [f"orphan-{n}" for n in range(3)]
    )
    rows = project.store().find(limit=None)
    assert {r.status for r in rows} == {"finished"}
    assert all(r.attempts == 2 for r in rows if r.id in orphans)


def test_a_lock_left_by_a_killed_reconciler_is_taken_over(fast: Project) -> None:
    client = fast.redis.client()
    client.set("rqjobs:reconcile:lock", f"{dead_label()}#left-behind", px=60_000)
    task_id = (
        fast.runtime()
        .store.insert(name="add", description="x", queue="default", args=[1, 2], kwargs={}, timeout_s=9)
        .id
    )
    backdate(fast, [task_id], 60)
    assert [c["task_id"] for c in reconcile(fast)] == [task_id]
    assert client.get("rqjobs:reconcile:lock") is None  # released after the pass


def test_reconcile_cli_errors_are_short(project: Project) -> None:
    project.write_config(
        database_url=f"sqlite:///{project.root / 'tasks.sqlite3'}",
        redis_url="redis://127.0.0.1:1/0",
        tasks_modules=["sample_tasks"],
    )
    result = project.rqjobs("reconcile")
    assert result.returncode == 1
    assert result.stderr.startswith("Error:") and "Traceback" not in result.stderr
    help_text = project.rqjobs("reconcile", "--help", check=True).stdout
    assert "--dry-run" in help_text and "Example: rqjobs reconcile" in help_text


def test_liveness_labels_name_the_process() -> None:
    from rqjobs.hostpid import host_pid, split_host_pid
    from rqjobs.worker.process import label_of_worker_name, new_worker_name

    label = host_pid()
    assert split_host_pid(label) == (socket.gethostname(), os.getpid())
    assert label == f"{socket.gethostname()}:{os.getpid()}"
    assert label_of_worker_name(new_worker_name(label)) == label
    assert label_of_worker_name("0123456789abcdef") is None
