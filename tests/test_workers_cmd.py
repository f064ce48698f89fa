"""``rqjobs workers``: the live workers as a table and as JSON, with real worker processes
(one busy on a slow task, one idle) and a worker's state note set in Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Project, wait_for


@pytest.fixture
def started(project: Project) -> Iterator[list[subprocess.Popen[str]]]:
    """Workers the test starts; killed with their work horses at the end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def _workers_json(project: Project) -> list[dict[str, Any]]:
    result = project.rqjobs("workers", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def test_no_live_workers_is_said_on_stderr_and_exits_0(project: Project) -> None:
    result = project.rqjobs("workers")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr.strip() == "no live workers"
    assert _workers_json(project) == []
    # no Redis, no answer: one line saying so, exit 1
    project.env["RQJOBS_REDIS_URL"] = f"unix://{project.root / 'no-redis.sock'}"
    result = project.rqjobs("workers")
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr.startswith("Error: Redis is unreachable (unix://") and "Traceback" not in result.stderr
    )


def test_workers_lists_a_busy_and_an_idle_worker_with_task_and_note(
    project: Project, started: list[subprocess.Popen[str]]
) -> None:
    from rqjobs.keys import worker_state_key

    marker = project.root / "started.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "300", "--marker", str(marker), description="slow")
    started.append(project.start_worker(log_name="worker-1.log"))
    wait_for(marker.exists, timeout=60, message="the slow task to start")
    started.append(project.start_worker(log_name="worker-2.log"))
    pids = {p.pid for p in started}
    workers = wait_for(
        lambda: (ws := _workers_json(project)) and len(ws) == 2 and all(w["state"] for w in ws) and ws,
        timeout=60,
        message="two live workers with RQ state",
    )
    assert {w["pid"] for w in workers} == pids
    by_state = {w["state"]: w for w in workers}
    busy, idle = by_state["busy"], by_state["idle"]
    assert busy["current_task"] == {"id": task_id, "name": "sleep-for"}
    assert busy["current_job"] == str(task_id)
    assert idle["current_task"] is None and idle["current_job"] is None
    for w in workers:
        assert w["worker"] == f"{w['host']}:{w['pid']}"
        assert w["queues"] == ["default"]
        assert w["started_at"] and w["last_heartbeat"] and w["expires_in_s"] > 0
        assert w["note"] == ""
    # the row agrees: the busy worker is the one the row names
    assert project.row(task_id).worker == busy["worker"]

    # a worker's own note (another part of rqjobs sets it when, e.g., its store fails)
    redis = project.redis.client()  # type: ignore[union-attr]
    redis.set(worker_state_key(idle["worker"]), "store failing", ex=60)
    noted = {w["worker"]: w["note"] for w in _workers_json(project)}
    assert noted == {idle["worker"]: "store failing", busy["worker"]: ""}

    # the table, as a person sees it on an 80-column terminal
    project.env["COLUMNS"] = "80"
    result = project.rqjobs("workers")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"WORKER\s+QUEUES\s+STATE\s+TASK\s+SINCE\s+BEAT\s+NOTE$", lines[0].rstrip()), lines
    for line in lines:
        assert len(line) <= 80, line
    busy_line = next(line for line in lines if f":{busy['pid']}" in line)
    idle_line = next(line for line in lines if f":{idle['pid']}" in line)
    assert re.search(rf"\bbusy\s+#{task_id} sleep-for\s+\S+ ago\s+\S+ ago", busy_line), busy_line
    assert re.search(r"\bidle\s+-\s+\S+ ago\s+\S+ ago\s+store failing$", idle_line.rstrip()), idle_line

    # a paused queue (issue 14) shows on every worker that takes from it
    assert project.rqjobs("pause", "default").returncode == 0
    paused = {w["worker"]: w["paused_queues"] for w in _workers_json(project)}
    assert paused == {idle["worker"]: ["default"], busy["worker"]: ["default"]}
    project.env["COLUMNS"] = "160"
    result = project.rqjobs("workers")
    assert result.returncode == 0, result.stderr
    idle_line = next(line for line in result.stdout.splitlines() if f":{idle['pid']}" in line)
    assert "store failing; paused: default" in idle_line, idle_line
    assert project.rqjobs("resume", "default").returncode == 0
    assert all(w["paused_queues"] == [] for w in _workers_json(project))

    # a worker that stops leaves the list
    os.killpg(started[1].pid, signal.SIGTERM)
    started[1].wait(60)
    assert [w["pid"] for w in _workers_json(project)] == [started[0].pid]
