"""The per-process handles: settings, task store, Redis connection and RQ queues.

Everything here is made on first use and then reused, so a loop of ``enqueue_task``
calls re-reads no config, rebuilds no engine and opens no new connection (a naive
version of this design measured 0.24x plain RQ on enqueue for exactly those reasons).
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rqjobs.config import Settings, current_settings, load_settings, set_current_settings

if TYPE_CHECKING:
    from pathlib import Path

    from redis import Redis
    from rq import Queue

    from rqjobs.store.repository import TaskStore


class Runtime:
    """Lazily-built handles for one :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queues: dict[str, Queue] = {}
        from rqjobs.private import exposure_warning_once

        warning = exposure_warning_once(settings.data_dir)
        if warning is not None:  # the CLI printed it already (then this is None)
            logging.getLogger("rqjobs").warning("%s", warning)

    @cached_property
    def store(self) -> TaskStore:
        from rqjobs.store.engine import get_engine
        from rqjobs.store.repository import TaskStore

        return TaskStore(get_engine(self.settings.database_url), retry_s=self.settings.db_retry_s)

    @cached_property
    def redis(self) -> Redis:
        from rqjobs.broker.connection import connect

        return connect(self.settings)

    def queue(self, name: str | None = None) -> Queue:
        """The RQ queue ``name`` with the JSON serializer (no pickle is read from Redis)."""
        name = name or self.settings.default_queue
        queue = self._queues.get(name)
        if queue is None:
            from rq import Queue
            from rq.serializers import JSONSerializer

            from rqjobs.broker.job import RqjobsJob

            queue = Queue(
                name,
                connection=self.redis,
                serializer=JSONSerializer,
                job_class=RqjobsJob,
                default_timeout=self.settings.default_timeout_s,
            )
            self._queues[name] = queue
        return queue

    def replace_settings(self, settings: Settings) -> None:
        """Run on ``settings`` from now on, keeping the database engine and the Redis client.

        For a running worker that reloaded its config file: the caller keeps the
        connection settings as they were (a new URL needs a restart). The new settings
        become the process-wide ones, so a work horse forked next sees them.
        """
        _runtimes.pop(id(self.settings), None)
        self.settings = settings
        self._queues.clear()  # a queue carries default_timeout_s
        store = self.__dict__.get("store")  # the cached TaskStore, if built: same engine, new retry budget
        if store is not None:
            store.retry_s = settings.db_retry_s
        _runtimes[id(settings)] = self
        set_current_settings(settings)


_runtimes: dict[int, Runtime] = {}


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The runtime for ``settings`` (default: the process-wide settings)."""
    settings = settings or current_settings()
    runtime = _runtimes.get(id(settings))
    if runtime is None or runtime.settings is not settings:
        runtime = Runtime(settings)
        _runtimes[id(settings)] = runtime
    return runtime


def reset_runtimes() -> None:
    """Forget every runtime (tests that switch settings)."""
    _runtimes.clear()


def configure(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Choose the settings this process uses from now on; optional.

    Without a call, the first use of the API finds them as the CLI does: ``RQJOBS_CONFIG``,
    else the nearest ``rqjobs.toml`` in the working directory or a parent folder. ``path``
    names a config file; ``overrides`` are top-level keys (``database_url=...``) that beat
    the file and the environment. Returns the settings, resolved.
    """
    settings = load_settings(path, overrides=overrides)
    set_current_settings(settings)
    return settings


def ready_runtime(runtime: Runtime | None = None) -> Runtime:
    """``runtime`` (default: the process's), with its ``tasks_modules`` imported.

    The public API calls this, so ``enqueue_task("crunch", ...)`` works in any process
    (a web app, a script) without importing the task module first: the module is
    imported once, on first use, as the worker imports it.
    """
    from rqjobs.tasks.registry import load_task_modules

    runtime = runtime or get_runtime()
    load_task_modules(runtime.settings)
    return runtime


def data_folder_of(settings: Settings) -> Path | None:
    """The data folder this settings' runtime creates (embedded Redis or SQLite in it), or None."""
    uses_it = settings.embedded_redis or settings.database_url.startswith(f"sqlite:///{settings.data_dir}/")
    return settings.data_dir if uses_it else None
