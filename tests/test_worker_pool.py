"""`rqjobs worker --workers N`: RQ's worker pool running N rqjobs workers on one host."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.conftest import Project, wait_for
from tests.faults import CHAOS_MODULES, FAST_RECONCILE, kill_session, lines, pid_alive, stop, wait_status
from tests.helpers import configure


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_three_workers_drain_a_batch(project: Project) -> None:
    configure(project, tasks_modules=CHAOS_MODULES)
    folder = str(project.root)
    ids = [
        project.enqueue("note-run", "--token", f"t{n}", "--folder", folder, "--seconds", "0.3")
        for n in range(15)
    ]
    result = project.rqjobs("worker", "--workers", "3", "--burst", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [project.row(i) for i in ids]
    assert [r.status for r in rows] == ["finished"] * len(ids)
    assert all(r.attempts == 1 for r in rows)
    labels = {r.worker for r in rows}
    assert len(labels) == 3, labels  # three processes took part
    assert sorted(lines(project.root / "done.log")) == sorted(f"t{n}" for n in range(15))


def test_pool_replaces_a_killed_worker_and_its_task_runs_again(project: Project) -> None:
    configure(project, tasks_modules=CHAOS_MODULES, **FAST_RECONCILE)
    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "2", "--marker", str(marker), "--retries", "1")
    pool = project.start_worker("--workers", "2", log_name="pool.log")
    try:
        wait_for(marker.exists, timeout=30, message="the task to start")
        horse = int(marker.read_text())
        marker.unlink()
        row = project.row(task_id)
        worker_pid = int(row.worker.rsplit(":", 1)[1])
        assert worker_pid in _children(pool.pid)
        os.kill(worker_pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(horse), timeout=10, message="the horse to die with its worker")
        # the other worker re-queues it (reconcile) and runs it; the pool starts a new worker
        row = wait_status(project, task_id, ("finished",), timeout=60)
        wait_for(lambda: len(_children(pool.pid)) == 2, timeout=30, message="the pool to replace the worker")
        assert worker_pid not in _children(pool.pid)
        workers = _children(pool.pid)
    finally:
        code = stop(pool)
        kill_session(pool)
    assert code == 0
    assert row.attempts == 2 and "worker died" in row.log
    # SIGTERM to the pool stopped them all, and the pool exited only once they had
    assert [p for p in workers if pid_alive(p)] == []


def test_workers_must_be_positive(project: Project) -> None:
    result = project.rqjobs("worker", "--workers", "0", "--burst")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
