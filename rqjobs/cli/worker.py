"""``rqjobs worker``: one RQ worker in this process, or a pool of them; ``rqjobs workers``:
the live ones."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from rqjobs.cli.context import JsonOption, echo_json, info, runtime_from, stdout


def worker(
    ctx: typer.Context,
    queues: Annotated[Optional[list[str]], typer.Argument(help="Queues to work, in priority order.")] = None,
    burst: Annotated[
        bool,
        typer.Option(
            "--burst",
            "-b",
            help="Exit once nothing is due (it waits for the retries of the jobs it ran; "
            "jobs scheduled for later stay scheduled).",
        ),
    ] = False,
    scheduler: Annotated[
        bool,
        typer.Option(
            "--scheduler/--no-scheduler", help="Run RQ's scheduler (retries with intervals need it)."
        ),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")] = False,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Worker processes on this host (RQ's worker pool).")
    ] = 1,
) -> None:
    """Run a worker with the scheduler on. Stop with Ctrl-C or SIGTERM (a second one stops at once).

    Example: rqjobs worker default emails --burst
    """
    logging_level = "WARNING" if quiet else "INFO"
    runtime = runtime_from(ctx)
    if workers > 1:
        from rqjobs.worker.pool import run_worker_pool

        run_worker_pool(
            runtime,
            queues or [runtime.settings.default_queue],
            num_workers=workers,
            burst=burst,
            with_scheduler=scheduler,
            logging_level=logging_level,
        )
        return
    from rqjobs.worker.rq_worker import run_worker

    run_worker(runtime, queues or (), burst=burst, with_scheduler=scheduler, logging_level=logging_level)


def workers(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The live workers: host:pid, queues, state, current task, since when, last heartbeat, note.

    A worker is live while its liveness key in Redis is fresh; NOTE is what it says about
    itself (e.g. "store failing": it takes no jobs until its task database answers).

    Example: rqjobs workers --json
    """
    from rqjobs.worker.listing import live_workers

    runtime = runtime_from(ctx)
    try:
        found = live_workers(runtime.redis, runtime.store)
    except Exception as exc:
        from rqjobs.broker.connection import describe, is_broker_error
        from rqjobs.exceptions import BrokerUnavailable

        if not is_broker_error(exc):
            raise
        # the liveness keys live in Redis: without it there is no answer, and no traceback either
        raise BrokerUnavailable(f"Redis is unreachable ({describe(runtime.settings)}): {exc}") from None
    paused = _paused_names(runtime)
    if as_json:
        echo_json(
            [{**w.to_dict(), "paused_queues": [q for q in w.queues if q in paused]} for w in found],
            ensure_ascii=False,
        )
        return
    if not found:
        info("no live workers")
        return
    from rqjobs.cli.render.workers import workers_table

    stdout().print(workers_table(found, paused=paused))


def _paused_names(runtime: Any) -> frozenset[str]:
    """The paused queues (issue 14), or none known when the task database does not answer:
    the workers' own liveness is in Redis and is worth showing anyway."""
    from rqjobs.exceptions import DatabaseError
    from rqjobs.flow import paused_queues

    try:
        return frozenset(p.queue for p in paused_queues(runtime))
    except DatabaseError as exc:
        from rich.markup import escape

        info(escape(f"paused queues unknown: {exc}"))
        return frozenset()
