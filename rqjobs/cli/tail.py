"""``rqjobs tail``: follow tasks live (a terminal) or as one line per change (a pipe)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from rqjobs.cli.context import MAX_ID, TaskNameOption, runtime_from, stdout
from rqjobs.exceptions import InvalidInput

if TYPE_CHECKING:
    from rich.console import Console

    from rqjobs.follow import TaskFollower

DEFAULT_TAIL_INTERVAL_S = 1.0


def tail(
    ctx: typer.Context,
    task_ids: Annotated[
        Optional[list[int]],
        typer.Argument(
            metavar="ID",
            min=1,
            max=MAX_ID,
            help="Follow just these tasks, and exit when they have all ended.",
        ),
    ] = None,
    name: TaskNameOption = None,
    interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between looks at the database.")
    ] = DEFAULT_TAIL_INTERVAL_S,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per change, not a line.")] = False,
) -> None:
    """Follow waiting and running tasks live, with a progress bar each.

    On a terminal this is a live view; piped (rqjobs tail > tail.log) it prints one line per change. Stop with Ctrl-C.

    With IDs, it follows those and exits when all have ended: 0 if all finished, 1 if any failed or was canceled.

    Example: rqjobs tail 42 43 --interval 0.5
    """
    from rqjobs.follow import TaskFollower

    if task_ids and name:
        raise InvalidInput("give task ids or --name, not both")
    follower = TaskFollower(runtime_from(ctx).store, task_ids=task_ids or (), names=name or ())
    console = stdout()
    try:
        if console.is_terminal and not as_json:
            _tail_live(console, follower, interval)
        else:
            _tail_lines(follower, interval, as_json=as_json)
    except KeyboardInterrupt:
        # Ctrl-C is how a plain `rqjobs tail` ends: no traceback, no "Interrupted"
        raise typer.Exit(130 if task_ids else 0) from None
    except BrokenPipeError:
        # `rqjobs tail | head`: the reader left; send what Python still flushes to nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None
    if task_ids:
        raise typer.Exit(0 if follower.all_finished else 1)


def _tail_lines(follower: TaskFollower, interval_s: float, *, as_json: bool) -> None:
    import json

    from rqjobs.cli.render.tail import change_line
    from rqjobs.follow import follow

    for changes in follow(follower, interval_s=interval_s):
        if not changes:
            continue
        for change in changes:
            # stamped with when the change happened, by the row (change.at), not when seen
            if as_json:
                data = {"at": change.at.isoformat(timespec="seconds"), **change.record.to_dict()}
                sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(change_line(change.record, change.at) + "\n")
        sys.stdout.flush()


def _tail_live(console: Console, follower: TaskFollower, interval_s: float) -> None:
    from rich.live import Live

    from rqjobs.cli.render.tail import TailView, ended_summary
    from rqjobs.follow import follow
    from rqjobs.status import WAITING

    what = (
        f"tasks {', '.join(map(str, follower.task_ids))}"
        if follower.task_ids
        else "waiting and running tasks"
    )
    if follower.names:
        what += f" named {', '.join(follower.names)}"
    heading = f"following {what} every {interval_s:g} s · Ctrl-C to stop"
    with Live(TailView([], heading), console=console, auto_refresh=False, transient=True) as live:
        for changes in follow(follower, interval_s=interval_s):
            for change in changes:
                if change.ended:
                    # one line, whatever the width: the description's end is what gets cut
                    live.console.print(ended_summary(change.record), no_wrap=True, overflow="ellipsis")
            active = follower.active
            waiting = sum(1 for r in active if r.status in WAITING)
            note = f" · the oldest {waiting} waiting shown" if waiting >= follower.active_limit else ""
            live.update(TailView(active, heading + note), refresh=True)
