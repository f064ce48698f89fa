"""Helpers shared by the benchmarks: a private redis-server and a project folder."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rqjobs.broker import embedded


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a unix socket; yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="rqjobs-bench-"))
    socket = folder / "redis.sock"
    proc = subprocess.Popen(
        [
            embedded.find_redis_server(None),
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not embedded.ping(socket) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield f"unix://{socket}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def project_folder(redis_url: str, tasks_source: str = "") -> Path:
    """A folder with rqjobs.toml (SQLite file, the given Redis) and a bench_tasks module."""
    folder = Path(tempfile.mkdtemp(prefix="rqjobs-bench-project-"))
    (folder / "bench_tasks.py").write_text(tasks_source or BENCH_TASKS)
    (folder / "rqjobs.toml").write_text(
        f'database_url = "sqlite:///{folder / "tasks.sqlite3"}"\n'
        f'redis_url = "{redis_url}"\n'
        'tasks_modules = ["bench_tasks"]\n'
    )
    return folder


BENCH_TASKS = '''
from rqjobs import background_task


def plain_noop(i=0):
    """The same work without rqjobs: what plain RQ runs."""
    return i


@background_task
def noop(i: int = 0) -> int:
    return i
'''


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values
