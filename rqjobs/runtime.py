"""The per-process handles: settings, task store, Redis connection and RQ queues.

Everything here is made on first use and then reused, so a loop of ``enqueue_task``
calls re-reads no config, rebuilds no engine and opens no new connection (a naive
version of this design measured 0.24x plain RQ on enqueue for exactly those reasons).
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from rqjobs.config import Settings, current_settings

if TYPE_CHECKING:
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
