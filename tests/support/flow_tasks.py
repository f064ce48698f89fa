"""Tasks with concurrency limits, for tests/test_limits.py (copied into the test project)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rqjobs import background_task


@background_task(max_running=2)
def limited_sleep(seconds: float = 1.0, marker: str = "") -> str:
    """Sleep; at most two run at once (``[limits]`` may say otherwise)."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


@background_task(max_running=1)
def solo(seconds: float = 1.0, marker: str = "") -> str:
    """Sleep, one at a time across every worker; writes its pid to ``marker`` first."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "alone"


@background_task(max_running=1)
def solo_fail(message: str = "boom") -> None:
    """Raise, one at a time."""
    raise RuntimeError(message)
