"""Concurrency limits (issue 14): never more than N running across every worker process.

Real worker processes against a real Redis and SQLite; the slots are a sorted set per
limited task (``rqjobs:limit:<task>``), taken before the work horse starts and extended
by the worker's liveness thread.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TESTS_DIR, Project, wait_for
from tests.faults import FAST_RECONCILE, kill_session, stop, wait_status
from tests.helpers import configure

MODULES = ("sample_tasks", "flow_tasks")


def _setup(project: Project, limits: dict[str, int] | None = None, **extra: Any) -> None:
    shutil.copy(TESTS_DIR / "support" / "flow_tasks.py", project.root / "flow_tasks.py")
    configure(project, tasks_modules=MODULES, **extra)
    if limits:
        text = project.config_path.read_text()
        table = "".join(f'"{name}" = {n}\n' for name, n in limits.items())
        project.config_path.write_text(text + "[limits]\n" + table)


def _burst_worker(project: Project, index: int) -> subprocess.Popen[str]:
    with (project.root / f"worker-{index}.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "rqjobs", "worker", "--burst"],
            cwd=project.root,
            env={**os.environ, **project.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used so far."""
    fields = (Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2]).split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _running_count(project: Project, task: str) -> int:
    return project.store().counts_by_status(names=[task]).get("running", 0)


@pytest.mark.parametrize("how", ["decorator", "config"])
def test_never_more_than_n_running_across_n_plus_2_workers(project: Project, how: str) -> None:
    limit = 2
    # the decorator says 2; the config's [limits] says 2 for a task whose decorator says 1
    task = "limited-sleep" if how == "decorator" else "solo"
    _setup(project, {"solo": limit} if how == "config" else None)
    ids = [project.enqueue(task, "--seconds", "1.5", description=f"limited {i}") for i in range(3 * limit)]
    other = project.enqueue("add", "--a", "1", "--b", "2", description="unlimited")

    client = project.redis.client()  # type: ignore[union-attr]
    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((_running_count(project, task), client.zcard(f"rqjobs:limit:{task}")))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    workers = [_burst_worker(project, i) for i in range(limit + 2)]
    try:
        for worker in workers:
            assert worker.wait(180) == 0
    finally:
        done.set()
        sampler.join(5)
        for worker in workers:
            kill_session(worker)

    rows = [project.row(i) for i in ids]
    assert all(r.status == "finished" for r in rows), [(r.id, r.status) for r in rows]
    # a job put back because the limit was full was never attempted
    assert all(r.attempts == 1 for r in rows), [(r.id, r.attempts, r.log) for r in rows]
    assert project.row(other).status == "finished"
    assert samples, "no sample taken"
    assert max(s[0] for s in samples) <= limit, max(samples)
    assert max(s[1] for s in samples) <= limit, max(samples)
    # the limit was reached: the test did exercise the waiting
    assert max(s[0] for s in samples) == limit or max(s[1] for s in samples) == limit
    assert client.zcard(f"rqjobs:limit:{task}") == 0  # every slot given back


def test_slot_of_a_killed_worker_lapses_within_the_liveness_window(project: Project) -> None:
    _setup(project, **FAST_RECONCILE)
    ttl_s = FAST_RECONCILE["worker_liveness_ttl_s"]
    marker = project.root / "first.pid"
    first = project.enqueue("solo", "--seconds", "120", "--marker", str(marker), "--retries", "0")
    second = project.enqueue("solo", "--seconds", "0.1", description="waits for the slot")
    holder = project.start_worker(log_name="holder.log")
    waiter = None
    try:
        wait_for(marker.exists, message="the first task to start")
        client = project.redis.client()  # type: ignore[union-attr]
        (member,) = client.zrange("rqjobs:limit:solo", 0, -1)
        assert member.decode().startswith(f"{first}@")

        waiter = project.start_worker(log_name="waiter.log")
        # the second job waits queued, unattempted, while the slot is held
        wait_for(lambda: "Listening on" in (project.root / "waiter.log").read_text(), message="waiter up")
        cpu_before, wall_before = _cpu_s(waiter.pid), time.monotonic()
        deadline = wall_before + 3
        while time.monotonic() < deadline:
            row = project.row(second)
            assert row.status == "queued" and row.attempts == 0
            assert client.zcard("rqjobs:limit:solo") == 1
            time.sleep(0.1)
        # meeting a full limit over and over, the waiting worker backs off: it does not spin
        # (a spinning one would burn about its whole wall time; a slower machine burns less)
        busy = (_cpu_s(waiter.pid) - cpu_before) / (time.monotonic() - wall_before)
        assert busy < 0.5, f"the waiting worker used {busy:.0%} of a CPU"

        os.killpg(holder.pid, signal.SIGKILL)  # the worker and its work horse, no goodbye
        holder.wait(10)
        seconds, micro = client.time()
        score = client.zscore("rqjobs:limit:solo", member)
        # the slot lapses within the liveness window after the last refresh
        assert score is None or score - (seconds + micro / 1e6) <= ttl_s

        row = wait_status(project, second, ("finished",), timeout=60)
        assert row.attempts == 1 and row.result == {"result": "alone"}
        wait_status(project, first, ("failed",), timeout=60)  # reconcile: its worker died
    finally:
        kill_session(holder)
        if waiter is not None:
            stop(waiter)
            kill_session(waiter)


def test_limit_config_is_checked(project: Project) -> None:
    _setup(project, {"no-such-task": 1})
    result = project.rqjobs("worker", "--burst")
    assert result.returncode == 2, result.stderr
    assert "[limits] names no registered task: no-such-task" in result.stderr
    assert "Traceback" not in result.stderr

    _setup(project)
    text = project.config_path.read_text()
    project.config_path.write_text(text + "[limits]\nsolo = 0\n")
    result = project.rqjobs("status")
    assert result.returncode == 2 and "limits.solo must be a whole number" in result.stderr


def test_max_running_must_be_positive() -> None:
    from rqjobs import background_task
    from rqjobs.exceptions import TaskDefinitionError

    with pytest.raises(TaskDefinitionError, match="max_running"):

        @background_task(max_running=0)
        def nope() -> None: ...


def test_limit_usage_and_override(project: Project) -> None:
    _setup(project, {"solo": 3})
    from rqjobs.flow import concurrency_limit, limit_usage
    from rqjobs.tasks.registry import get_task

    runtime = project.runtime()
    assert concurrency_limit(get_task("solo"), runtime.settings) == 3
    assert concurrency_limit(get_task("limited-sleep"), runtime.settings) == 2
    assert concurrency_limit(get_task("add"), runtime.settings) is None
    usage = {u.task: (u.limit, u.running) for u in limit_usage(runtime)}
    assert usage == {"limited-sleep": (2, 0), "solo": (3, 0), "solo-fail": (1, 0)}


def test_slot_given_back_when_the_task_fails_or_its_process_is_killed(project: Project) -> None:
    _setup(project)
    client = project.redis.client()  # type: ignore[union-attr]
    failing = [project.enqueue("solo-fail", "--retries", "0", description=f"fails {i}") for i in range(2)]
    project.work()
    for task_id in failing:
        row = project.row(task_id)
        assert row.status == "failed" and row.attempts == 1
    assert client.zcard("rqjobs:limit:solo-fail") == 0

    marker = project.root / "horse.pid"
    killed = project.enqueue("solo", "--seconds", "60", "--marker", str(marker), "--retries", "0")
    after = project.enqueue("solo", "--seconds", "0.1", description="after the kill")
    worker = project.start_worker()
    try:
        wait_for(lambda: marker.exists() and marker.read_text(), message="the task to start")
        os.kill(int(marker.read_text()), signal.SIGKILL)  # the work horse only
        assert wait_status(project, killed, ("failed",)).attempts == 1
        assert wait_status(project, after, ("finished",)).attempts == 1
        wait_for(lambda: client.zcard("rqjobs:limit:solo") == 0, message="the slot given back")
    finally:
        stop(worker)
        kill_session(worker)
