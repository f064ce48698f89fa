"""``rqjobs schedule ...``: list the ``[[schedule]]`` tables, run one now, pause, resume.

Thin like the rest of the CLI: each command is one call into
:mod:`rqjobs.schedules.service` plus rendering. Heavy imports stay inside the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rqjobs.cli.context import GROUP_SETTINGS, JsonOption, echo_json, info, runtime_from, stdout

schedule_app = typer.Typer(
    help="Recurring tasks: the [[schedule]] tables of rqjobs.toml (every worker fires them).",
    epilog="Example: rqjobs schedule list",
    **GROUP_SETTINGS,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name in rqjobs.toml.")]


@schedule_app.command("list")
def list_command(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Every schedule: task, cron or interval, timezone, next tick, last tick and its row's status.

    Example: rqjobs schedule list --json
    """
    from rqjobs.schedules.service import list_schedules

    views = list_schedules(runtime_from(ctx))
    if as_json:
        echo_json([v.to_dict() for v in views], ensure_ascii=False)
        return
    if not views:
        info("no schedules: add [[schedule]] tables to rqjobs.toml (see config.example.toml)")
        return
    from rqjobs.cli.render.tables import schedules_table

    stdout().print(schedules_table(views))


@schedule_app.command("run")
def run_command(ctx: typer.Context, name: NameArgument) -> None:
    """Make a row for the schedule now, outside its ticks; prints the new task id.

    Example: rqjobs schedule run nightly-report
    """
    from rqjobs.schedules.service import run_schedule

    record = run_schedule(runtime_from(ctx), name)
    typer.echo(record.id)
    info(f"[dim]task {record.id} ({record.name}) {record.status} on queue {record.queue}[/dim]")


@schedule_app.command("pause")
def pause_command(ctx: typer.Context, name: NameArgument) -> None:
    """Stop firing the schedule's ticks (kept in the database, across restarts).

    Example: rqjobs schedule pause nightly-report
    """
    _set_paused(ctx, name, True)


@schedule_app.command("resume")
def resume_command(ctx: typer.Context, name: NameArgument) -> None:
    """Fire the schedule's ticks again, from the next one (ticks passed while paused are not caught up).

    Example: rqjobs schedule resume nightly-report
    """
    _set_paused(ctx, name, False)


def _set_paused(ctx: typer.Context, name: str, paused: bool) -> None:
    from rich.markup import escape

    from rqjobs.schedules.service import set_paused

    changed = set_paused(runtime_from(ctx), name, paused)
    word = "paused" if paused else "resumed"
    info(escape(f"schedule {name} {word}" if changed else f"schedule {name} was already {word}"))
