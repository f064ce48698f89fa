"""The ``rqjobs`` command line: the top layer, which nothing in the library imports.

One module per command group; each command parses its options, calls the library once
and renders the result with rich (:mod:`rqjobs.cli.render`). Library errors become exit
codes only at the boundary (:mod:`rqjobs.cli.errors`). Heavy modules (rq, redis,
SQLAlchemy, rich tables) are imported inside the commands, so ``rqjobs --help`` stays
fast.
"""

from rqjobs.cli.app import app
from rqjobs.cli.main import main

__all__ = ["app", "main"]
