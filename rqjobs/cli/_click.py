"""The click that Typer runs on.

Recent Typer releases vendor a trimmed copy of click as ``typer._click``; older ones use
the ``click`` package. Contexts, commands and exceptions must come from the copy Typer
uses, or Typer does not see them, so everything click-shaped is imported from here.
"""

from __future__ import annotations

try:  # Typer >= 0.22 vendors click
    from typer._click.core import Command, Context  # type: ignore[import-not-found]
    from typer._click.exceptions import ClickException, UsageError  # type: ignore[import-not-found]
    from typer.exceptions import Abort, Exit  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Typer versions that run on the click package
    from click import Abort, ClickException, Command, Context, UsageError  # type: ignore[assignment]
    from click.exceptions import Exit  # type: ignore[assignment]

__all__ = ["Abort", "ClickException", "Command", "Context", "Exit", "UsageError"]
