"""Tasks for the fault tests: copied into test projects as the module ``chaos_tasks``.

Each run leaves traces in files under ``folder`` (appends are atomic for short lines), so a
test can count runs and completions per task independently of the task rows:

* ``runs.log``: one line per run that reached the function;
* ``done.log``: one line per run that completed (written just before returning, so a kill
  after it makes a second completion: delivery is at-least-once);
* ``running/<pid>``: the token of the run that process is doing now (for killers).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from rqjobs import background_task, set_task_progress


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@background_task
def note_run(token: str, folder: str, seconds: float = 0.0) -> dict:
    """Record one run of ``token`` (and optionally sleep), then succeed."""
    base = Path(folder)
    _append(base / "runs.log", token)
    if seconds:
        time.sleep(seconds)
    _append(base / "done.log", token)
    return {"token": token}


@background_task
def chaos(token: str, folder: str, kind: str = "ok", seconds: float = 0.1, failures: int = 0) -> dict:
    """One chaos-test task. ``kind``: ok, fail (always raises), flaky (raises on its first
    ``failures`` runs), hang (sleeps past its timeout), random (raises half of the time)."""
    base = Path(folder)
    pid_file = base / "running" / str(os.getpid())
    pid_file.write_text(token)
    try:
        _append(base / "runs.log", token)
        runs = sum(1 for line in (base / "runs.log").read_text().splitlines() if line == token)
        steps = 3
        for step in range(steps):
            set_task_progress(100 * step // steps, f"step {step + 1} of {steps}")
            time.sleep(seconds / steps)
        if kind == "fail":
            raise RuntimeError(f"{token}: always fails")
        if kind == "flaky" and runs <= failures:
            raise RuntimeError(f"{token}: flaky failure {runs} of {failures}")
        if kind == "hang":
            time.sleep(3600)
        if kind == "random" and random.random() < 0.5:
            raise RuntimeError(f"{token}: random failure")
        _append(base / "done.log", token)
        return {"token": token, "runs": runs}
    finally:
        pid_file.unlink(missing_ok=True)
