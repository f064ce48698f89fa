"""The console script ``rqjobs`` (and ``python -m rqjobs``): run the app, exit with its code."""

from __future__ import annotations

import sys

from rqjobs.cli.app import app
from rqjobs.cli.errors import as_click_exception, debugging


def main(argv: list[str] | None = None) -> None:
    """Console-script entry (``rqjobs`` and ``python -m rqjobs``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="rqjobs")
    except KeyboardInterrupt:
        from rqjobs.cli.context import stderr

        stderr().print("Interrupted")
        sys.exit(130)
    except Exception as exc:  # outside any command (e.g. while parsing): same short message
        if "--debug" in args or debugging():
            raise
        failure = as_click_exception(exc)
        failure.show()
        sys.exit(failure.exit_code)
