"""``rqjobs redis``: the embedded redis-server (used when no redis_url is configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from rqjobs.cli.context import GROUP_SETTINGS, info, settings_from
from rqjobs.exceptions import InvalidInput

if TYPE_CHECKING:
    from rqjobs.config import Settings

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
def redis_stop(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Stop it even with workers attached (they start it again).")
    ] = False,
) -> None:
    """Stop the embedded redis-server (queued jobs are kept on disk).

    Refused (exit 2, nothing stopped) while rqjobs workers are attached to it: they would
    start it again at once. Stop the workers first, or pass --force.

    Example: rqjobs redis stop
    """
    from rqjobs.broker import embedded

    settings = settings_from(ctx)
    if not settings.embedded_redis:
        raise InvalidInput("redis_url is configured: rqjobs does not manage that server")
    if not force:
        attached = _attached_workers(settings)
        if attached:
            raise InvalidInput(
                f"{len(attached)} rqjobs worker{'s are' if len(attached) > 1 else ' is'} attached to the "
                f"embedded redis-server ({', '.join(attached)}); they would start it again at once. "
                "Stop them first (SIGTERM), or use --force; nothing was stopped"
            )
    # a message for people (stderr); `redis status` is the data (stdout)
    info("stopped" if embedded.stop(settings.data_dir) else "not running")


def _attached_workers(settings: Settings) -> list[str]:
    """``host:pid`` of each live worker on the running embedded server (none if it is down)."""
    from rqjobs.broker import embedded
    from rqjobs.broker.connection import connect
    from rqjobs.worker.listing import live_workers

    if not embedded.ping(embedded.socket_path_for(settings.data_dir)):
        return []
    client = connect(settings, start_embedded=False)
    try:
        return [worker.label for worker in live_workers(client)]
    finally:
        client.close()
