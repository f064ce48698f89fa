"""``rqjobs retry``, ``cancel``, ``prune`` and ``reconcile``: commands that change rows.

Each is one library call; these modules only check which options go together, and
print one outcome per task (exit 1 if any task was not handled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from rqjobs.cli.context import (
    MAX_ID,
    JsonOption,
    complete_task_name,
    echo_json,
    info,
    load_tasks,
    runtime_from,
    stdout,
)
from rqjobs.exceptions import InvalidInput

if TYPE_CHECKING:
    from rqjobs.api import TaskOutcome


def _print_outcomes(outcomes: Sequence[TaskOutcome], as_json: bool) -> None:
    """Each task's outcome: data on stdout; the command fails (1) if any was not ``ok``."""
    if as_json:
        echo_json([o.to_dict() for o in outcomes])
    else:
        from rqjobs.cli.render.tables import outcome_line

        console = stdout()
        for o in outcomes:
            console.print(outcome_line(o.task_id, o.ok, o.action, o.detail), soft_wrap=True)
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


def retry(
    ctx: typer.Context,
    task_ids: Annotated[
        Optional[list[int]],
        typer.Argument(metavar="ID", min=1, max=MAX_ID, help="Failed or canceled tasks to run again."),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed task (with --name: of that name).")
    ] = False,
    name: Annotated[
        Optional[list[str]],
        typer.Option(
            "--name",
            "-n",
            help="With --failed: only this task name (repeatable).",
            autocompletion=complete_task_name,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run failed (or canceled) tasks again, as new attempts of the same rows.

    Attempts keep counting, the retry budget starts afresh and the log keeps the earlier attempts. Exits 1 if any task could not be retried.
    Tasks canceled because this one failed (--after) wait for it again (deferred).

    Example: rqjobs retry --failed --name send-mail
    """
    from rqjobs.api import retry_tasks

    if not task_ids and not failed:
        raise InvalidInput("give the ids of the tasks to retry, or --failed")
    if name and not failed:
        raise InvalidInput("--name goes with --failed")
    load_tasks(ctx)
    outcomes = retry_tasks(task_ids or (), failed=failed, names=name or (), runtime=runtime_from(ctx))
    if not outcomes:
        info("no failed tasks to retry")
    _print_outcomes(outcomes, as_json)


def cancel(
    ctx: typer.Context,
    task_ids: Annotated[list[int], typer.Argument(metavar="ID", min=1, max=MAX_ID, help="Tasks to cancel.")],
    as_json: JsonOption = False,
) -> None:
    """Cancel tasks: a queued or scheduled one leaves its queue, a running one is stopped.

    A deferred one (--after) is canceled before it gets a job; the tasks waiting for a
    canceled one are canceled with it. Finished and failed tasks are left alone (exit 1
    says so).

    Example: rqjobs cancel 42 43
    """
    from rqjobs.api import cancel_tasks

    _print_outcomes(cancel_tasks(task_ids, runtime=runtime_from(ctx)), as_json)


def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of the tasks to delete (by creation): 30d, 12h, 2w.")
    ],
    status_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--status",
            help="Only this final status: finished, failed or canceled (repeatable; default all three).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete old finished, failed or canceled tasks, in batches; says how many.

    Example: rqjobs prune --older-than 30d --status finished --dry-run
    """
    from rqjobs.api import prune_tasks
    from rqjobs.status import FINAL
    from rqjobs.timeparse import parse_duration_s

    statuses = [s.strip().lower() for s in status_ or ()]
    count, cutoff = prune_tasks(
        parse_duration_s(older_than), statuses=statuses, dry_run=dry_run, runtime=runtime_from(ctx)
    )
    if as_json:
        echo_json(
            {
                "deleted": 0 if dry_run else count,
                "matched": count,
                "dry_run": dry_run,
                "statuses": statuses or list(FINAL),
                "created_before": cutoff.isoformat(timespec="seconds"),
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    which = "/".join(statuses or FINAL)
    # a summary for people: stderr, like every command's messages (--json is the data)
    typer.echo(
        f"{verb} {count} {which} task{'s' if count != 1 else ''} created before "
        f"{cutoff.astimezone().isoformat(timespec='seconds')}",
        err=True,
    )


def reconcile(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON.")] = False,
    no_lock: Annotated[
        bool,
        typer.Option("--no-lock", help="Do not wait for a pass running elsewhere (safe, may repeat work)."),
    ] = False,
) -> None:
    """Make task rows agree with Redis now (workers also do this every reconcile_interval_s).

    Fails or re-queues rows whose worker died, takes RQ's verdict for jobs RQ finished or
    failed, and enqueues again queued rows whose job is missing from Redis.

    Example: rqjobs reconcile --dry-run
    """
    from rqjobs.reconcile import reconcile as reconcile_rows

    load_tasks(ctx)
    report = reconcile_rows(runtime_from(ctx), dry_run=dry_run, lock=not no_lock)
    if as_json:
        echo_json([change.to_dict() for change in report.changes])
    else:
        from rich.markup import escape

        console = stdout()
        for change in report.changes:
            console.print(escape(change.describe()), soft_wrap=True)
    done = "to make (dry run)" if dry_run else "made"
    info(
        f"[dim]reconcile: {len(report.changes)} changes {done}, {report.checked} unfinished rows checked[/dim]"
    )
