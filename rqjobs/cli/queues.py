"""``rqjobs pause`` and ``rqjobs resume``: stop and restart taking jobs from queues.

One library call each (:mod:`rqjobs.flow`); messages for people on stderr, ``--json`` data
(every paused queue afterwards) on stdout.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rqjobs.cli.context import JsonOption, echo_json, info, runtime_from

QueuesArgument = Annotated[Optional[list[str]], typer.Argument(metavar="QUEUE", help="Queue names.")]


def _after(ctx: typer.Context, as_json: bool) -> None:
    from rich.markup import escape

    from rqjobs.cli.render.flow import paused_summary, paused_to_dict
    from rqjobs.flow import paused_queues

    paused = paused_queues(runtime_from(ctx))
    if as_json:
        echo_json([paused_to_dict(p) for p in paused], ensure_ascii=False)
    else:
        info(f"[dim]{escape(paused_summary(paused) or 'no queue is paused')}[/dim]")


def pause(
    ctx: typer.Context,
    queues: QueuesArgument = None,
    all_known: Annotated[
        bool,
        typer.Option("--all", help="Every queue known: configured, in Redis, or holding waiting rows."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Pause queues: workers stop taking their jobs within a second; running jobs finish.

    Queued jobs stay queued (kept in the database, so the pause survives a Redis restart). A burst worker treats a paused queue as empty.

    Example: rqjobs pause mail reports
    """
    from rich.markup import escape

    from rqjobs.flow import pause_queues

    runtime = runtime_from(ctx)
    changed = pause_queues(queues or (), all_known=all_known, runtime=runtime)
    if changed:
        info(escape(f"paused {', '.join(changed)}"))
    else:
        info("already paused")
    _after(ctx, as_json)


def resume(
    ctx: typer.Context,
    queues: QueuesArgument = None,
    all_paused: Annotated[bool, typer.Option("--all", help="Every paused queue.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Resume paused queues: workers take their jobs again within a second.

    Example: rqjobs resume --all
    """
    from rich.markup import escape

    from rqjobs.flow import resume_queues

    changed = resume_queues(queues or (), all_paused=all_paused, runtime=runtime_from(ctx))
    info(escape(f"resumed {', '.join(changed)}") if changed else "none of them was paused")
    _after(ctx, as_json)
