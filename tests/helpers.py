"""Helpers for tests that drive the built-in and user tasks through the CLI and real workers.

Kept out of conftest.py so the shared fixtures stay small; everything here works on a
:class:`tests.conftest.Project`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import TESTS_DIR, Project


def _toml(value: Any) -> str:
    # JSON strings, numbers and arrays of them are valid TOML; booleans are spelt the same
    return json.dumps(value)


def configure(
    project: Project,
    *,
    mail: dict[str, Any] | None = None,
    redis_url: str | None = None,
    database_url: str | None = None,
    tasks_modules: Sequence[str] = ("sample_tasks",),
    **extra: Any,
) -> None:
    """Rewrite the project's rqjobs.toml: its database, its Redis, the task modules, ``extra``.

    The defaults are the fixture's SQLite file and Redis, and tests/support/sample_tasks.py;
    ``mail`` becomes the ``[mail]`` table. Naming ``chaos_tasks`` copies that module in too.
    """
    if "chaos_tasks" in tasks_modules:
        shutil.copy(TESTS_DIR / "support" / "chaos_tasks.py", project.root / "chaos_tasks.py")
    assert project.redis is not None or redis_url
    values: dict[str, Any] = {
        "database_url": database_url or f"sqlite:///{project.root / 'tasks.sqlite3'}",
        "redis_url": redis_url or project.redis.url,  # type: ignore[union-attr]
        "tasks_modules": list(tasks_modules),
        **extra,
    }
    lines = [f"{key} = {_toml(value)}" for key, value in values.items()]
    if mail:
        lines.append("[mail]")
        lines += [f"{key} = {_toml(value)}" for key, value in mail.items()]
    project.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def rqjobs_in(
    cwd: Path, project: Project, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``rqjobs --config <project's> ARGS`` with another working directory than the project's."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "rqjobs", "--config", str(project.config_path), *args],
        cwd=cwd,
        env={**os.environ, **project.env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def work_in(cwd: Path, project: Project) -> subprocess.CompletedProcess[str]:
    """A burst worker whose working directory is ``cwd``; asserts it exits 0."""
    result = rqjobs_in(cwd, project, "worker", "--burst")
    assert result.returncode == 0, f"worker exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def read_row(project: Project, task_id: int) -> Any:
    """The row, read without importing any task module into the test process."""
    from rqjobs.store.engine import get_engine
    from rqjobs.store.repository import TaskStore

    record = TaskStore(get_engine(f"sqlite:///{project.root / 'tasks.sqlite3'}")).get(int(task_id))
    assert record is not None, f"no row {task_id}"
    return record


def row_count(project: Project) -> int:
    """How many rows the project's database holds (0 when the file was never created)."""
    path = project.root / "tasks.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "tasks" not in tables:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])


def redis_job_keys(project: Project) -> list[bytes]:
    """RQ job hashes in the project's Redis: a refused enqueue must leave none."""
    assert project.redis is not None
    return list(project.redis.client().scan_iter("rq:job:*"))


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, a one-line ``Error:`` naming what was wrong, and no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Error:" in result.stderr, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in {result.stderr!r}"
