"""Tasks for the unique-key and bulk tests: copied into a test project as ``unique_tasks``."""

from __future__ import annotations

import time
from pathlib import Path

from rqjobs import background_task


@background_task(unique=True)
def sync_account(account: int, full: bool = False) -> dict:
    """A unique task: one live run per (account, full)."""
    return {"account": account, "full": full}


@background_task
def hold_until(marker: str, release: str) -> str:
    """Write ``marker``, then wait until the file ``release`` exists (at most 60 s)."""
    Path(marker).write_text("started")
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"
