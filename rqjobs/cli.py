"""The ``rqjobs`` command line: parse, call the library, render with rich.

Thin on purpose: every command is one library call plus rendering. Library errors
(:class:`~rqjobs.exceptions.RqjobsError`) become ``Error: ...`` on stderr with exit code
2 (refused before anything was written) or 1 (failed after), only here. Heavy modules
(rq, redis, SQLAlchemy, rich tables) are imported inside the commands, so ``rqjobs
--help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from rqjobs import __version__
from rqjobs._click import Context
from rqjobs.enqueue_commands import EnqueueGroup
from rqjobs.exceptions import InvalidInput, RqjobsError

if TYPE_CHECKING:
    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime
    from rqjobs.tasks.commons import TaskSpec

app = typer.Typer(
    name="rqjobs",
    help="RQ jobs with a durable, truthful SQL row per task: enqueue, work, inspect, retry.",
    epilog='Example: rqjobs enqueue count-words --description "demo" --text "hello world" && rqjobs worker --burst',
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain click help: rich help costs ~60 ms of imports per start
)
enqueue_app = typer.Typer(
    cls=EnqueueGroup,
    help="Create a task row and enqueue its job; prints the new task id.",
    epilog='Example: rqjobs enqueue count-words --description "demo" --text "to be or not to be"',
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.add_typer(enqueue_app, name="enqueue")
redis_app = typer.Typer(
    help="Manage the embedded redis-server (used when no redis_url is configured).",
    epilog="Example: rqjobs redis status",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.add_typer(redis_app, name="redis")
db_app = typer.Typer(
    help="Manage the task database's schema.",
    epilog="Example: rqjobs db upgrade",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")


# -- shared plumbing --------------------------------------------------------------------


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


def settings_from(ctx: Context) -> Settings:
    """Load the settings once per invocation, from the root command's options."""
    from rqjobs.config import load_settings, set_current_settings

    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if "settings" not in obj:
        if "config" not in obj:  # enqueue's group resolves subcommands before the root callback runs
            params = root.params
            obj.update(
                config=params.get("config"),
                overrides={k: params.get(k) for k in ("database_url", "redis_url", "data_dir")},
            )
        obj["settings"] = load_settings(obj.get("config"), overrides=obj.get("overrides"))
        set_current_settings(obj["settings"])
        root.obj = obj
    return obj["settings"]


def runtime_from(ctx: Context) -> Runtime:
    from rqjobs.runtime import get_runtime

    return get_runtime(settings_from(ctx))


def load_tasks(ctx: Context) -> dict[str, TaskSpec]:
    from rqjobs.tasks.commons import load_task_modules

    return load_task_modules(settings_from(ctx))


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _info(message: str) -> None:
    _stderr().print(message)


# -- enqueue ----------------------------------------------------------------------------


def run_enqueue(
    ctx: Context,
    spec: TaskSpec,
    task_kwargs: dict[str, Any],
    *,
    description: str,
    queue: str | None,
    timeout: str | None,
    retries: int | None,
    retry_interval: int | list[int] | None,
    at: str | None,
    in_: str | None,
) -> None:
    """Called by every generated ``enqueue TASK`` command: prints the id alone on stdout."""
    from rqjobs.api import enqueue_task
    from rqjobs.timeparse import parse_duration_s, parse_time

    when = parse_time(at) if at else None
    delay_s = parse_duration_s(in_) if in_ else None
    timeout_s = int(parse_duration_s(timeout)) if timeout else None
    record = enqueue_task(
        spec.name,
        description=description,
        queue=queue,
        timeout_s=timeout_s,
        retries=retries,
        retry_interval_s=retry_interval,
        at=when,
        delay_s=delay_s,
        runtime=runtime_from(ctx),
        **task_kwargs,
    )
    typer.echo(record.id)
    when_text = (
        f", scheduled for {record.scheduled_for.isoformat(timespec='seconds')}"
        if record.scheduled_for
        else ""
    )
    _info(f"[dim]task {record.id} ({record.name}) {record.status} on queue {record.queue}{when_text}[/dim]")


# -- worker -----------------------------------------------------------------------------


@app.command()
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
) -> None:
    """Run a worker with the scheduler on. Stop with Ctrl-C or SIGTERM (a second one stops at once).

    Example: rqjobs worker default emails --burst
    """
    from rqjobs.worker import run_worker

    run_worker(
        runtime_from(ctx),
        queues or (),
        burst=burst,
        with_scheduler=scheduler,
        logging_level="WARNING" if quiet else "INFO",
    )


# -- status / show / tasks --------------------------------------------------------------


@app.command()
def status(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Failed tasks.")] = False,
    running: Annotated[bool, typer.Option("--running", help="Running tasks.")] = False,
    queued: Annotated[bool, typer.Option("--queued", help="Queued tasks.")] = False,
    scheduled: Annotated[bool, typer.Option("--scheduled", help="Scheduled tasks.")] = False,
    finished: Annotated[bool, typer.Option("--finished", help="Finished tasks.")] = False,
    canceled: Annotated[bool, typer.Option("--canceled", help="Canceled tasks.")] = False,
    name: Annotated[
        Optional[list[str]], typer.Option("--name", "-n", help="Only this task name (repeatable).")
    ] = None,
    since: Annotated[Optional[str], typer.Option(help="Created since: 1h, 30m, 2d or an ISO time.")] = None,
    limit: Annotated[
        Optional[int], typer.Option(min=1, help="How many rows (default from config: 20).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
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
    }
    statuses = [s for s, on in flags.items() if on]
    since_dt = parse_since(since) if since else None
    runtime = runtime_from(ctx)
    store = runtime.store
    rows = store.list(
        statuses=statuses, names=name or (), since=since_dt, limit=limit or runtime.settings.status_limit
    )
    if as_json:
        import json

        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2, ensure_ascii=False))
        return
    from rqjobs.render import status_table

    counts = store.counts_by_status(names=name or (), since=since_dt)
    _stdout().print(status_table(rows, counts))


@app.command()
def show(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(metavar="ID", help="Task id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Everything about one task: arguments, timings, attempts, result and log.

    Example: rqjobs show 42
    """
    from rqjobs.exceptions import TaskNotFound

    record = runtime_from(ctx).store.get(task_id)
    if record is None:
        raise TaskNotFound(f"no task {task_id}")
    if as_json:
        import json

        typer.echo(json.dumps(record.to_dict(), indent=2, ensure_ascii=False))
        return
    from rqjobs.render import task_detail

    _stdout().print(task_detail(record))


@app.command()
def tasks(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """The registered tasks and their parameters.

    Example: rqjobs tasks
    """
    from rqjobs.enqueue_commands import task_parameters

    specs = load_tasks(ctx)
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
        for spec in specs.values()
    ]
    if as_json:
        import json

        typer.echo(json.dumps(data, indent=2, default=str))
        return
    from rqjobs.render import tasks_table

    _stdout().print(tasks_table(data))


# -- redis / db -------------------------------------------------------------------------


@redis_app.command("status")
def redis_status(ctx: typer.Context) -> None:
    """Is the embedded redis-server running, and where.

    Example: rqjobs redis status
    """
    from rqjobs.broker import embedded
    from rqjobs.broker.connection import describe

    settings = settings_from(ctx)
    if not settings.embedded_redis:
        typer.echo(f"using {describe(settings)} (redis_url); no embedded server")
        return
    info = embedded.status(settings.data_dir, settings.redis_server)
    if info.running:
        typer.echo(
            f"running: pid {info.pid}, redis {info.version}, {info.keys} keys, "
            f"socket {info.socket_path}, log {info.log_path}"
        )
    else:
        typer.echo(f"not running (it starts on demand; socket would be {info.socket_path})")


@redis_app.command("stop")
def redis_stop(ctx: typer.Context) -> None:
    """Stop the embedded redis-server (queued jobs are kept on disk).

    Example: rqjobs redis stop
    """
    from rqjobs.broker import embedded

    settings = settings_from(ctx)
    if not settings.embedded_redis:
        raise InvalidInput("redis_url is configured: rqjobs does not manage that server")
    typer.echo("stopped" if embedded.stop(settings.data_dir) else "not running")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Bring the task database's schema up to date, keeping its rows.

    Example: rqjobs db upgrade
    """
    from rqjobs.store import schema
    from rqjobs.store.engine import get_engine

    settings = settings_from(ctx)
    engine = get_engine(settings.database_url, check_schema=False)
    before, after = schema.upgrade(engine)
    if before == after:
        typer.echo(f"already at schema {after}")
    else:
        typer.echo(f"upgraded schema {before or '(empty)'} -> {after}")


# -- entry point ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, turning library errors into short messages."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("RQJOBS_DEBUG") == "1"
    try:
        app(args=args, prog_name="rqjobs")
    except RqjobsError as exc:
        if debug:
            raise
        from rich.markup import escape

        _stderr().print(f"[bold red]Error:[/bold red] {escape(exc.message)}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _stderr().print("Interrupted")
        sys.exit(130)
    except Exception as exc:  # anything unexpected: short message, traceback only on --debug
        if debug:
            raise
        from rich.markup import escape

        _stderr().print(
            f"[bold red]Error:[/bold red] {type(exc).__name__}: {escape(str(exc))} (run with --debug for the traceback)",
            soft_wrap=True,
        )
        sys.exit(1)
