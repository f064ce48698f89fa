"""Tasks for tests/test_last_edges.py: horses that end without a word, big results, progress.

Copied into the test project as the module ``edge_tasks`` next to ``sample_tasks``.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

from rqjobs import background_task, set_task_progress


def _mark(marker: str) -> None:
    if marker:
        Path(marker).write_text(str(os.getpid()))


@background_task
def quiet_exit(code: int = 0, marker: str = "") -> None:
    """End the work horse at once with ``os._exit(code)``: no outcome reaches anyone."""
    _mark(marker)
    os._exit(code)


@background_task
def exec_true(marker: str = "") -> None:
    """Replace the work horse with /bin/true, which exits 0."""
    _mark(marker)
    os.execv("/bin/true", ["/bin/true"])


@background_task
def segfault() -> None:
    """Crash the work horse with SIGSEGV (a read at address 0)."""
    ctypes.string_at(0)


@background_task
def quiet_exit_first(marker: str) -> str:
    """The first run exits 0 quietly; later runs return."""
    path = Path(marker)
    if path.exists():
        return "second run"
    path.write_text(str(os.getpid()))
    os._exit(0)


@background_task
def big_result(size: int) -> dict:
    """Return a result whose JSON is about ``size`` bytes."""
    return {"blob": "x" * size}


@background_task
def two_steps(fail: bool = False) -> str:
    """Report 50 "step 1/2" then 100 "step 2/2" at once (the second is held back by the throttle)."""
    set_task_progress(50, "step 1/2")
    set_task_progress(100 if not fail else 75, "step 2/2")
    if fail:
        raise RuntimeError("failed after step 2")
    return "done"


@background_task
def sleep_marked(seconds: float = 60.0, marker: str = "") -> str:
    """Write the horse's pid to ``marker``, then sleep."""
    _mark(marker)
    time.sleep(seconds)
    return "slept"
