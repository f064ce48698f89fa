"""``rqjobs db``: the task database's schema."""

from __future__ import annotations

import typer

from rqjobs.cli.context import GROUP_SETTINGS, info, settings_from

db_app = typer.Typer(
    help="Manage the task database's schema.", epilog="Example: rqjobs db upgrade", **GROUP_SETTINGS
)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Bring the task database's schema up to date, keeping its rows.

    Example: rqjobs db upgrade
    """
    from rqjobs.store import schema
    from rqjobs.store.engine import get_engine

    engine = get_engine(settings_from(ctx).database_url, check_schema=False)
    before, after = schema.upgrade(engine)
    # what happened, for people: stderr, like every command's messages
    if before == after:
        info(f"already at schema {after}")
    else:
        info(f"upgraded schema {before or '(empty)'} -> {after}")
