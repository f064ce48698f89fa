"""Shared fixtures: a private redis-server per test session, a project folder per test.

Everything is real: redis-server processes on unix sockets in temporary folders (never
the shared server at 127.0.0.1:6379), SQLite files, and ``rqjobs`` run as subprocesses
exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from rqjobs.broker import embedded

#: fixtures defined in support modules, registered once for every test module
pytest_plugins = ["tests.support.databases"]

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
SAMPLE_TASKS = TESTS_DIR / "support" / "sample_tasks.py"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test depends on the developer's RQJOBS_* variables or terminal."""
    for name in list(os.environ):
        if name.startswith("RQJOBS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    yield
    from rqjobs.config import set_current_settings
    from rqjobs.runtime import reset_runtimes

    set_current_settings(None)
    reset_runtimes()


@pytest.fixture(autouse=True)
def _reset_task_registry() -> Iterator[None]:
    """Tasks a test defines in this process are forgotten after it: no test sees another's."""
    from rqjobs.tasks import registry

    state = registry.snapshot()
    yield
    registry.restore(state)


def _redis_binary() -> str:
    return embedded.find_redis_server(None)


class RedisServer:
    """A redis-server this test session owns, on a unix socket."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                _redis_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if embedded.ping(self.socket, timeout_s=0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"test redis-server did not start; see {self.folder / 'redis.log'}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@dataclass
class Project:
    """A user's project folder: rqjobs.toml, a tasks module, a SQLite file, a Redis."""

    root: Path
    redis: RedisServer | None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "rqjobs.toml"

    def write_config(self, **values: Any) -> None:
        lines = []
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def settings(self) -> Any:
        from rqjobs.config import load_settings, set_current_settings

        settings = load_settings(self.config_path, env={})
        set_current_settings(settings)
        return settings

    def runtime(self) -> Any:
        from rqjobs.runtime import get_runtime
        from rqjobs.tasks.commons import load_task_modules

        settings = self.settings()
        load_task_modules(settings)
        return get_runtime(settings)

    def store(self) -> Any:
        return self.runtime().store

    def row(self, task_id: int) -> Any:
        record = self.store().get(int(task_id))
        assert record is not None, f"no row {task_id}"
        return record

    def rqjobs(
        self, *args: str, timeout: float = 60, check: bool = False, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the rqjobs command line in the project folder, as a user would."""
        env = {**os.environ, **self.env}
        result = subprocess.run(
            [sys.executable, "-m", "rqjobs", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"rqjobs {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def enqueue(self, task: str, *args: str, description: str = "test task") -> int:
        result = self.rqjobs("enqueue", task, "--description", description, *args, check=True)
        return int(result.stdout.strip())

    def work(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`rqjobs worker --burst` in a subprocess; asserts it exits 0."""
        result = self.rqjobs("worker", "--burst", *args, timeout=timeout)
        assert result.returncode == 0, f"worker exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result

    def signal_worker_while_running(
        self, marker: Path, gaps_s: Sequence[float], sig: int = signal.SIGTERM
    ) -> int:
        """Start a worker, wait until the task writes ``marker``, then send ``sig`` after
        each gap in turn; returns the worker's exit code (it is killed if it hangs)."""
        worker = self.start_worker()
        try:
            wait_for(marker.exists, message="the task to start")
            for gap_s in gaps_s:
                time.sleep(gap_s)
                worker.send_signal(sig)
            return worker.wait(30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)

    def start_worker(self, *args: str, log_name: str = "worker.log") -> subprocess.Popen[str]:
        """A long-running worker process, its output in ``log_name`` (the caller stops it)."""
        with (self.root / log_name).open("a") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "rqjobs", "worker", *args],
                cwd=self.root,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )


@pytest.fixture
def project(tmp_path: Path, redis_server: RedisServer) -> Iterator[Project]:
    """A project using the session's private Redis (flushed) and its own SQLite file."""
    client = redis_server.client()
    client.flushall()
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(SAMPLE_TASKS, root / "sample_tasks.py")
    proj = Project(root=root, redis=redis_server)
    proj.write_config(
        database_url=f"sqlite:///{root / 'tasks.sqlite3'}",
        redis_url=redis_server.url,
        tasks_modules=["sample_tasks"],
    )
    yield proj
    client.flushall()
    from rqjobs.store.engine import forget_engines

    forget_engines()


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    """Start aiosmtpd servers on 127.0.0.1 and a free port (``start(handler, **kw)`` -> port)."""
    from aiosmtpd.controller import Controller

    from tests.support.smtp import free_port

    controllers: list[Controller] = []

    def start(handler: object, **kwargs: Any) -> int:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.05, message: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
