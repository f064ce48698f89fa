"""Tasks the tests enqueue: copied into each test project as the module ``sample_tasks``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from rqjobs import PermanentTaskError, background_task, set_task_progress


@background_task
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@background_task
def echo_dict(text: str = "hi") -> dict:
    """Return a dict as it is."""
    return {"echo": text}


@background_task
def fail_always(message: str = "boom") -> None:
    """Raise every time."""
    raise RuntimeError(message)


@background_task
def flaky(marker: str, failures: int = 1) -> str:
    """Fail the first ``failures`` runs (counted in the file ``marker``), then succeed."""
    path = Path(marker)
    runs = int(path.read_text()) if path.exists() else 0
    path.write_text(str(runs + 1))
    if runs < failures:
        raise RuntimeError(f"flaky failure {runs + 1} of {failures}")
    return f"succeeded after {runs} failures"


@background_task
def progress_steps(steps: int = 4, pause_s: float = 0.3) -> dict:
    """Report progress in steps."""
    for i in range(steps):
        set_task_progress(int(100 * i / steps), f"step {i + 1} of {steps}")
        time.sleep(pause_s)
    return {"steps": steps}


@background_task
def sleep_for(seconds: float = 1.0, marker: str = "") -> str:
    """Sleep, writing the pid to ``marker`` first (so tests can find the work horse)."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


@background_task
def swallow_timeout(seconds: float = 5.0) -> str:
    """Catch every Exception, including RQ's timeout, and return as if all was well."""
    try:
        time.sleep(seconds)
    except Exception:
        return "swallowed"
    return "not timed out"


@background_task
def unserialisable() -> object:
    """Return something JSON cannot hold."""
    return {1, 2, 3}


@background_task
def kill_self(sig: int = int(signal.SIGKILL)) -> None:
    """Die by a signal, as the OOM killer would do it."""
    os.kill(os.getpid(), sig)


@background_task
def record_and_fail(marker: str) -> None:
    """Append the start time of this run to ``marker``, then fail."""
    with Path(marker).open("a") as fh:
        fh.write(f"{time.time()}\n")
    raise RuntimeError("recorded and failed")


@background_task
def ignore_timeout(seconds: float = 60.0, marker: str = "") -> str:
    """Ignore RQ's timeout signal and sleep on: a task that never returns in time."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept through the timeout"


@background_task
def fail_permanently(marker: str) -> None:
    """Count the run in ``marker``, then fail in a way no retry can fix."""
    path = Path(marker)
    path.write_text(str(int(path.read_text()) + 1 if path.exists() else 1))
    raise PermanentTaskError("the customer does not exist")


@background_task
def sleep_first(marker: str, seconds: float = 60.0) -> str:
    """The first run writes its pid to ``marker`` and sleeps; later runs return at once."""
    path = Path(marker)
    if path.exists():
        return "second run"
    path.write_text(str(os.getpid()))
    time.sleep(seconds)
    return "first run"


@background_task
def exit_now(code: int = 0) -> None:
    """Call sys.exit, as a wrapped command-line tool's main() does."""
    import sys

    sys.exit(code)


@background_task
def chatty_progress(reports: int = 2000) -> dict:
    """Report progress in a tight loop with a new message each time."""
    for i in range(reports):
        set_task_progress(100 * i // reports, f"item {i + 1} of {reports}")
    return {"reports": reports}
