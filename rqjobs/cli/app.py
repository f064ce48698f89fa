"""The Typer app: the root group, its global options, and where each command lives.

Importing this module imports every command module, so each of those imports only
Typer and :mod:`rqjobs.cli.context` at the top and everything heavy inside its command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rqjobs import __version__
from rqjobs.cli.context import GROUP_SETTINGS
from rqjobs.cli.db import db_app
from rqjobs.cli.enqueue import enqueue_app
from rqjobs.cli.errors import RqjobsGroup
from rqjobs.cli.inspect import show, status, tasks
from rqjobs.cli.manage import cancel, prune, reconcile, retry
from rqjobs.cli.queues import pause, resume
from rqjobs.cli.redis import redis_app
from rqjobs.cli.schedule import schedule_app
from rqjobs.cli.stats import stats
from rqjobs.cli.tail import tail
from rqjobs.cli.web import web
from rqjobs.cli.worker import worker, workers

app = typer.Typer(
    cls=RqjobsGroup,
    name="rqjobs",
    help="RQ jobs with a durable, truthful SQL row per task: enqueue, work, inspect, retry.",
    epilog='Example: rqjobs enqueue count-words --description "demo" --text "hello world" && rqjobs worker --burst',
    pretty_exceptions_enable=False,
    **GROUP_SETTINGS,
)
app.add_typer(enqueue_app, name="enqueue")
for command in (worker, workers, status, show, tasks, tail, retry, cancel, stats, prune):
    app.command()(command)
app.add_typer(redis_app, name="redis")
app.add_typer(db_app, name="db")
app.add_typer(schedule_app, name="schedule")
app.command()(reconcile)
app.command()(pause)
app.command()(resume)
app.command()(web)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rqjobs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", envvar="RQJOBS_CONFIG", help="Config file (default: ./rqjobs.toml)."),
    ] = None,
    database_url: Annotated[
        Optional[str], typer.Option(envvar="RQJOBS_DATABASE_URL", help="Task database URL (default: SQLite).")
    ] = None,
    redis_url: Annotated[
        Optional[str],
        typer.Option(envvar="RQJOBS_REDIS_URL", help="Redis URL (default: embedded redis-server)."),
    ] = None,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(envvar="RQJOBS_DATA_DIR", help="Data folder (default: .rqjobs/ by the config)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = {
        "config": config,
        "overrides": {"database_url": database_url, "redis_url": redis_url, "data_dir": data_dir},
        "debug": debug,
    }
