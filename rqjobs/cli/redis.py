"""``rqjobs redis``: the embedded redis-server (used when no redis_url is configured)."""

from __future__ import annotations

import typer

from rqjobs.cli.context import GROUP_SETTINGS, info, settings_from
from rqjobs.exceptions import InvalidInput

redis_app = typer.Typer(
    help="Manage the embedded redis-server (used when no redis_url is configured).",
    epilog="Example: rqjobs redis status",
    **GROUP_SETTINGS,
)


@redis_app.command("status")
def redis_status(ctx: typer.Context) -> None:
    """Is the embedded redis-server running, and where (on stdout: it is the data asked for).

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
    # a message for people (stderr); `redis status` is the data (stdout)
    info("stopped" if embedded.stop(settings.data_dir) else "not running")
