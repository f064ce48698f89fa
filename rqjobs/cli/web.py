"""``rqjobs web``: serve the dashboard (:mod:`rqjobs.web`, the ``web`` extra)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from rqjobs.cli.context import info, runtime_from
from rqjobs.exceptions import InvalidInput


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
    from rich.markup import escape

    mode = " (read-only)" if read_only else ""
    serve(
        runtime_from(ctx),
        host=host,
        port=port,
        read_only=read_only,
        token=os.environ.get("RQJOBS_WEB_TOKEN") or None,
        ready=lambda url: info(escape(f"rqjobs web{mode} on {url} (Ctrl+C stops it)")),
    )
