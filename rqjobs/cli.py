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

#: task ids and limits are 32-bit integers in every supported database
MAX_ID = 2**31 - 1

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


def complete_task_name(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for ``--name``: the registered task names."""
    try:
        names = list(load_tasks(ctx))
    except Exception:  # completion must never print an error into the user's prompt
        return []
    return [n for n in names if n.startswith(incomplete)]


#: `--name/-n` on status, tail and stats: repeatable, completed from the registered tasks
TaskNameOption = Annotated[
    Optional[list[str]],
    typer.Option("--name", "-n", help="Only this task name (repeatable).", autocompletion=complete_task_name),
]


DEFAULT_TAIL_INTERVAL_S = 1.0
DEFAULT_STATS_SINCE = "7d"


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
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Worker processes on this host (RQ's worker pool).")
    ] = 1,
) -> None:
    """Run a worker with the scheduler on. Stop with Ctrl-C or SIGTERM (a second one stops at once).

    Example: rqjobs worker default emails --burst
    """
    if workers > 1:
        from rqjobs.worker.pool import run_worker_pool

        runtime = runtime_from(ctx)
        run_worker_pool(
            runtime,
            queues or [runtime.settings.default_queue],
            num_workers=workers,
            burst=burst,
            with_scheduler=scheduler,
            logging_level="WARNING" if quiet else "INFO",
        )
        return
    from rqjobs.worker.rq_worker import run_worker

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
    name: TaskNameOption = None,
    since: Annotated[Optional[str], typer.Option(help="Created since: 1h, 30m, 2d or an ISO time.")] = None,
    limit: Annotated[
        Optional[int], typer.Option(min=1, max=MAX_ID, help="How many rows (default from config: 20).")
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
    rows = store.find(
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
    task_id: Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_ID, help="Task id.")],
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


# -- tail -------------------------------------------------------------------------------


@app.command()
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
    console = _stdout()
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


def _tail_lines(follower: Any, interval_s: float, *, as_json: bool) -> None:
    import json
    from datetime import datetime, timezone

    from rqjobs.follow import follow
    from rqjobs.render import change_line

    for changes in follow(follower, interval_s=interval_s):
        if not changes:
            continue
        now = datetime.now(timezone.utc)
        for change in changes:
            if as_json:
                data = {"at": now.isoformat(timespec="seconds"), **change.record.to_dict()}
                sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(change_line(change.record, now) + "\n")
        sys.stdout.flush()


def _tail_live(console: Any, follower: Any, interval_s: float) -> None:
    from rich.live import Live

    from rqjobs.follow import follow
    from rqjobs.render import TailView, ended_summary
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
                    live.console.print(ended_summary(change.record))
            active = follower.active
            waiting = sum(1 for r in active if r.status in WAITING)
            note = f" · the oldest {waiting} waiting shown" if waiting >= follower.active_limit else ""
            live.update(TailView(active, heading + note), refresh=True)


# -- retry / cancel ---------------------------------------------------------------------


def _print_outcomes(outcomes: list[Any], as_json: bool) -> None:
    """Each task's outcome: data on stdout; the command fails (1) if any was not ``ok``."""
    if as_json:
        import json

        typer.echo(json.dumps([o.to_dict() for o in outcomes], indent=2))
    else:
        from rqjobs.render import outcome_line

        console = _stdout()
        for o in outcomes:
            console.print(outcome_line(o.task_id, o.ok, o.action, o.detail), soft_wrap=True)
    if any(not o.ok for o in outcomes):
        raise typer.Exit(1)


@app.command()
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run failed (or canceled) tasks again, as new attempts of the same rows.

    Attempts keep counting, the retry budget starts afresh and the log keeps the earlier attempts. Exits 1 if any task could not be retried.

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
        _info("no failed tasks to retry")
    _print_outcomes(outcomes, as_json)


@app.command()
def cancel(
    ctx: typer.Context,
    task_ids: Annotated[list[int], typer.Argument(metavar="ID", min=1, max=MAX_ID, help="Tasks to cancel.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cancel tasks: a queued or scheduled one leaves its queue, a running one is stopped.

    Finished and failed tasks are left alone (exit 1 says so).

    Example: rqjobs cancel 42 43
    """
    from rqjobs.api import cancel_tasks

    _print_outcomes(cancel_tasks(task_ids, runtime=runtime_from(ctx)), as_json)


# -- stats / prune ----------------------------------------------------------------------


@app.command()
def stats(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="Tasks created since: 1h, 30m, 7d, an ISO time, or 'all'.")
    ] = DEFAULT_STATS_SINCE,
    name: TaskNameOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, failure rates and run times per task name, and a chart of runs over time.

    Run times are those of finished runs (p50, p95, max); the chart shows finished and failed runs per time slice.

    Example: rqjobs stats --since 24h
    """
    from rqjobs.stats import compute_stats
    from rqjobs.timeparse import parse_since

    since_dt = None if since.strip().lower() == "all" else parse_since(since)
    console = _stdout()
    buckets = max(10, min(60, console.width - 20))
    result = compute_stats(runtime_from(ctx).store, since=since_dt, names=name or (), buckets=buckets)
    if as_json:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rqjobs.render import stats_view

    window = (
        "in all time" if since_dt is None else f"since {since_dt.astimezone().isoformat(timespec='minutes')}"
    )
    console.print(stats_view(result, window))


@app.command()
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
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
        import json

        data = {
            "deleted": 0 if dry_run else count,
            "matched": count,
            "dry_run": dry_run,
            "statuses": statuses or list(FINAL),
            "created_before": cutoff.isoformat(timespec="seconds"),
        }
        typer.echo(json.dumps(data, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    which = "/".join(statuses or FINAL)
    typer.echo(
        f"{verb} {count} {which} task{'s' if count != 1 else ''} created before "
        f"{cutoff.astimezone().isoformat(timespec='seconds')}"
    )


@app.command()
def web(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            envvar="RQJOBS_WEB_HOST", help="Address to listen on (not loopback: needs RQJOBS_WEB_TOKEN)."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="RQJOBS_WEB_PORT", min=0, max=65535, help="Port (0: any free one).")
    ] = 8765,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, allow no retry or cancel.")
    ] = False,
) -> None:
    """Serve the web dashboard: overview, task search, live progress, workers, retry and cancel.

    Needs the web extra (pip install 'rqjobs[web]'). If RQJOBS_WEB_TOKEN is set, every request must carry it.

    Example: rqjobs web --port 8765 --read-only
    """
    try:
        from rqjobs.web import serve
    except ModuleNotFoundError as exc:
        raise InvalidInput(f"the web dashboard needs {exc.name}: pip install 'rqjobs[web]'") from None
    token = os.environ.get("RQJOBS_WEB_TOKEN") or None
    mode = " (read-only)" if read_only else ""
    serve(
        runtime_from(ctx),
        host=host,
        port=port,
        read_only=read_only,
        token=token,
        ready=lambda url: _info(f"rqjobs web{mode} on {url} (Ctrl+C stops it)"),
    )


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


# -- reconcile --------------------------------------------------------------------------


@app.command("reconcile")
def reconcile_command(
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
    from rqjobs.reconcile import reconcile

    load_tasks(ctx)
    report = reconcile(runtime_from(ctx), dry_run=dry_run, lock=not no_lock)
    if as_json:
        import json

        typer.echo(json.dumps([change.to_dict() for change in report.changes], indent=2))
    else:
        from rich.markup import escape

        for change in report.changes:
            _stdout().print(escape(change.describe()), soft_wrap=True)
    done = "to make (dry run)" if dry_run else "made"
    _info(
        f"[dim]reconcile: {len(report.changes)} changes {done}, {report.checked} unfinished rows checked[/dim]"
    )
