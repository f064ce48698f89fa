"""The one place library errors become exit codes: the boundary between click and rqjobs.

The library raises :class:`~rqjobs.exceptions.RqjobsError` (exit code 2: refused before
any row was written; 1: failed after) and never prints. The root group turns such an
error, or any unexpected one, into a click exception that carries the exit code, so
click prints ``Error: ...`` and exits with it, and typer's ``CliRunner`` sees the same
outcome in-process. ``--debug`` (or ``RQJOBS_DEBUG=1``) lets the original exception
through, with its traceback.
"""

from __future__ import annotations

import os
from typing import IO, Any

from typer.core import TyperGroup

from rqjobs.cli._click import Abort, ClickException, Context, Exit
from rqjobs.exceptions import RqjobsError


class CommandFailed(ClickException):
    """A library error (or an unexpected one) on its way to stderr and the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        """``Error:`` in bold red on a terminal, plain when piped or with NO_COLOR."""
        from rich.console import Console
        from rich.markup import escape

        console = Console(file=file, stderr=file is None, highlight=False)
        console.print(f"[bold red]Error:[/bold red] {escape(self.message)}", soft_wrap=True)


def as_click_exception(exc: Exception) -> CommandFailed:
    if isinstance(exc, RqjobsError):
        return CommandFailed(exc.message, exc.exit_code)
    return CommandFailed(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)


def debugging(ctx: Context | None = None) -> bool:
    """Were tracebacks asked for (``--debug`` or ``RQJOBS_DEBUG=1``)?"""
    if os.environ.get("RQJOBS_DEBUG") == "1":
        return True
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


class RqjobsGroup(TyperGroup):
    """The root ``rqjobs`` group: runs the command and maps what the library raised."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ClickException, Exit, Abort):  # click's own outcomes (Exit is a RuntimeError)
            raise
        except Exception as exc:
            if debugging(ctx):
                raise
            raise as_click_exception(exc) from exc
