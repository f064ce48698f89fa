"""``rqjobs status``, ``show`` and ``tasks``: read rows and the task registry, render them.

``status`` and ``show`` import the store (SQLAlchemy) but neither rq nor redis: the rows
are the whole truth these commands show.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from rqjobs.cli.context import (
    MAX_ID,
    JsonOption,
    TaskNameOption,
    echo_json,
    load_tasks,
    runtime_from,
    stdout,
)


def status(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Failed tasks.")] = False,
    running: Annotated[bool, typer.Option("--running", help="Running tasks.")] = False,
    queued: Annotated[bool, typer.Option("--queued", help="Queued tasks.")] = False,
    scheduled: Annotated[bool, typer.Option("--scheduled", help="Scheduled tasks.")] = False,
    finished: Annotated[bool, typer.Option("--finished", help="Finished tasks.")] = False,
    canceled: Annotated[bool, typer.Option("--canceled", help="Canceled tasks.")] = False,
    deferred: Annotated[
        bool, typer.Option("--deferred", help="Tasks waiting for their parents (--after).")
    ] = False,
    name: TaskNameOption = None,
    since: Annotated[Optional[str], typer.Option(help="Created since: 1h, 30m, 2d or an ISO time.")] = None,
    limit: Annotated[
        Optional[int], typer.Option(min=1, max=MAX_ID, help="How many rows (default from config: 20).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    schedule: Annotated[
        Optional[list[str]], typer.Option("--schedule", help="Only rows made by this schedule (repeatable).")
    ] = None,
) -> None:
    """List tasks, newest first; status flags combine.

    Example: rqjobs status --failed --name send-mail --since 1h
    """
    from rqjobs.timeparse import parse_since

    flags = {
        "failed": failed,
        "running": running,
        "queued": queued,
        "scheduled": scheduled,
        "finished": finished,
        "canceled": canceled,
        "deferred": deferred,
    }
    statuses = [s for s, on in flags.items() if on]
    since_dt = parse_since(since) if since else None
    runtime = runtime_from(ctx)
    store = runtime.store
    rows = store.find(
        statuses=statuses,
        names=name or (),
        since=since_dt,
        limit=limit or runtime.settings.status_limit,
        schedules=schedule or (),
    )
    if as_json:
        echo_json([r.to_dict() for r in rows], ensure_ascii=False)
        return
    from rqjobs.cli.render.tables import status_table

    counts = store.counts_by_status(names=name or (), since=since_dt, schedules=schedule or ())
    stdout().print(status_table(rows, counts, statuses))
    _note_paused(runtime)


def _note_paused(runtime: Any) -> None:
    """A line on stderr naming the paused queues: why queued rows may not move."""
    from rich.markup import escape

    from rqjobs.cli.context import info
    from rqjobs.cli.render.flow import paused_summary
    from rqjobs.flow import paused_queues

    line = paused_summary(paused_queues(runtime))
    if line:
        info(f"[yellow]{escape(line)}[/yellow]")


def show(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_ID, help="Task id.")],
    as_json: JsonOption = False,
) -> None:
    """Everything about one task: arguments, timings, attempts, result and log.

    Piped or redirected, it prints plain lines (no boxes), tracebacks whole.

    Example: rqjobs show 42
    """
    from rqjobs.exceptions import TaskNotFound

    store = runtime_from(ctx).store
    record = store.get(task_id)
    if record is None:
        raise TaskNotFound(f"no task {task_id}")
    dependents = store.children_of(task_id)
    if as_json:
        echo_json({**record.to_dict(), "dependents": [i for i, _ in dependents]}, ensure_ascii=False)
        return
    parents = store.parent_states(task_id) if record.after else []
    console = stdout()
    if not console.is_terminal:  # a pipe or a file: plain lines, tracebacks whole
        from rqjobs.cli.render.tables import task_detail_text

        typer.echo(task_detail_text(record, parents, dependents), nl=False)
        return
    from rqjobs.cli.render.tables import task_detail

    console.print(task_detail(record, parents, dependents))


def tasks(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The registered tasks and their parameters.

    Example: rqjobs tasks
    """
    from rqjobs.cli.task_options import task_parameters

    data = [
        {
            "name": spec.name,
            "summary": spec.summary,
            "path": spec.path,
            "parameters": [
                {k: (v if k != "cli_type" else v is not None) for k, v in p.items()}
                for p in task_parameters(spec)
            ],
        }
        for spec in load_tasks(ctx).values()
    ]
    if as_json:
        echo_json(data, default=str)
        return
    from rqjobs.cli.render.tables import tasks_table

    stdout().print(tasks_table(data))
