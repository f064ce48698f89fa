"""Helpers shared by the fault tests (reconcile, Redis outages, worker pool, chaos)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Project, wait_for

#: the task modules fault tests load: sample_tasks plus chaos_tasks (see tests/helpers.configure)
CHAOS_MODULES = ("sample_tasks", "chaos_tasks")

#: short intervals so that the tests see reconcile act within seconds
FAST_RECONCILE = {"reconcile_interval_s": 1.0, "reconcile_grace_s": 2.0, "worker_liveness_ttl_s": 2.0}


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def dead_label() -> str:
    return f"{socket.gethostname()}:{dead_pid()}"


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM a worker we started (its whole session) and wait for it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(10)
    return proc.returncode


def kill_session(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL everything in the session of a process we started (cleanup)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(10)


def pid_alive(pid: int) -> bool:
    from rqjobs.worker.process import local_process_alive

    return local_process_alive(pid)


def backdate(project: Project, task_ids: list[int], seconds: float) -> None:
    """Make rows look ``seconds`` older (past reconcile's grace period) without waiting."""
    from datetime import timedelta

    from sqlalchemy import update

    from rqjobs.store.models import Task, utcnow

    store = project.store()
    with store.engine.begin() as conn:
        conn.execute(
            update(Task.__table__)
            .where(Task.__table__.c.id.in_(task_ids))
            .values(
                enqueued_at=utcnow() - timedelta(seconds=seconds),
                created_at=utcnow() - timedelta(seconds=seconds),
            )
        )


def start_in_rq(runtime: Any, job_id: str, worker_name: str) -> None:
    """Do to a queued job what a worker does when it starts it: off the queue, started, registered."""
    from rq.executions import Execution

    queue = runtime.queue("default")
    job = queue.fetch_job(job_id)
    assert job is not None
    with runtime.redis.pipeline() as pipe:
        pipe.lrem(queue.key, 0, job_id)
        job.prepare_for_execution(worker_name, pipe)
        Execution.create(job, ttl=90, pipeline=pipe, worker_name=worker_name)
        pipe.execute()


def reconcile(project: Project, *args: str, check: bool = True) -> list[dict[str, Any]]:
    """`rqjobs reconcile --json ...`: the changes it printed."""
    result = project.rqjobs("reconcile", "--json", *args, check=check)
    return json.loads(result.stdout) if result.returncode == 0 else []


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_status(project: Project, task_id: int, statuses: tuple[str, ...], timeout: float = 60) -> Any:
    def check() -> Any:
        row = project.row(task_id)
        return row if row.status in statuses else None

    return wait_for(
        check, timeout=timeout, interval=0.2, message=f"task {task_id} to be {'/'.join(statuses)}"
    )


def redis_known_for(project: Project, seconds: float = 60) -> None:
    """Tell reconcile this Redis has kept its data for ``seconds`` (as running workers would).

    Reconcile presumes no worker dead while Redis might just have lost its data; a test
    that builds a dead worker's leftovers by hand, with no worker ever running, says so.
    """
    import time

    client = project.redis.client()  # type: ignore[union-attr]
    now_s, _ = client.time()
    client.set("rqjobs:redis-since", int(now_s - seconds))
    ttl = FAST_RECONCILE["worker_liveness_ttl_s"]
    while float(client.info("server")["uptime_in_seconds"]) < ttl:
        time.sleep(0.2)
