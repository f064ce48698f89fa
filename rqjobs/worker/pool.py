"""``rqjobs worker --workers N``: several rqjobs workers on one host under RQ's WorkerPool."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rqjobs.worker.process import die_with_parent

if TYPE_CHECKING:
    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime


def _pool_worker_main(
    settings: Settings,
    queues: Sequence[str],
    burst: bool,
    with_scheduler: bool,
    logging_level: str,
    pool_pid: int,
) -> None:
    """Body of one pool worker process: fresh handles, then the usual supervised worker."""
    from rqjobs.config import set_current_settings
    from rqjobs.runtime import get_runtime, reset_runtimes
    from rqjobs.worker.rq_worker import run_worker

    # a worker whose pool was killed stops after its current job (warm shutdown)
    die_with_parent(signal.SIGTERM, pool_pid)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # not the pool's handlers, until RQ installs its own
    set_current_settings(settings)
    reset_runtimes()  # the parent's Redis client and queues stay with the parent
    run_worker(
        get_runtime(settings), queues, burst=burst, with_scheduler=with_scheduler, logging_level=logging_level
    )


def run_worker_pool(
    runtime: Runtime,
    queues: Sequence[str],
    *,
    num_workers: int,
    burst: bool = False,
    with_scheduler: bool = True,
    logging_level: str = "INFO",
) -> None:
    """``rqjobs worker --workers N``: RQ's WorkerPool running N rqjobs workers on this host.

    RQ's pool builds each worker from a class and a Redis connection; an rqjobs worker
    needs the settings, its task modules and a runtime of its own, so each pool process
    runs :func:`rqjobs.worker.rq_worker.run_worker` instead. The pool restarts a worker that dies
    (not in burst mode) and stops them all on SIGINT/SIGTERM.
    """
    from multiprocessing import get_context

    from rq.serializers import JSONSerializer
    from rq.worker_pool import WorkerPool

    from rqjobs.broker.job import RqjobsJob
    from rqjobs.tasks import commons
    from rqjobs.worker.rq_worker import RqjobsWorker
    from rqjobs.worker.supervisor import log_to_stderr

    log_to_stderr(logging_level)  # the pool's own log too (RQ would give it a stdout handler)
    commons.load_task_modules(runtime.settings)  # imported once here, inherited by every fork
    from rqjobs.flow import check_limits

    check_limits(runtime.settings)  # refused here once, not in every forked worker
    settings = runtime.settings
    fork_process = get_context("fork").Process

    class RqjobsWorkerPool(WorkerPool):
        def get_worker_process(
            self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
        ) -> Any:
            return fork_process(
                target=_pool_worker_main,
                args=(settings, list(queues), burst, with_scheduler, logging_level, os.getpid()),
                name=f"rqjobs worker {name}",
            )

    pool = RqjobsWorkerPool(
        list(queues),
        connection=runtime.redis,
        num_workers=num_workers,
        worker_class=RqjobsWorker,
        serializer=JSONSerializer,
        job_class=RqjobsJob,
    )
    pool.start(burst=burst, logging_level=logging_level)
