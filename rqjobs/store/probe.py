"""Does the task database answer? A cheap check the worker makes before it runs a job.

A worker whose database fails must not take every queued job and fail it (issue 11): it
checks first, and on failure puts the job back and waits (``rqjobs.worker.store_pause``).

On SQLite the check opens a NEW connection, as the work horse will: a connection that
was open when the ``-wal`` file was deleted goes on working while every new one gets
"disk I/O error", so the worker's pooled connection would vouch for a database no horse
can use. :func:`release_pool` closes the pooled ones, which also lets SQLite recover once
no connection holds the deleted file any more.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from rqjobs.exceptions import DatabaseError
from rqjobs.store.models import Task
from rqjobs.store.retry import run_with_retry, short_reason

_probe_engines: dict[str, Engine] = {}


def _fresh_engine(engine: Engine) -> Engine:
    """An unpooled twin of a SQLite engine, made once per process."""
    url = engine.url.render_as_string(hide_password=False)
    twin = _probe_engines.get(url)
    if twin is None:
        from rqjobs.store.engine import create_store_engine

        twin = create_store_engine(url, pooled=False)
        _probe_engines[url] = twin
    return twin


def probe(engine: Engine, task_id: int | None = None) -> str | None:
    """None when the database answers a read of the tasks table; else why not, in short.

    A locked or busy SQLite database answers (it is in use, not failing). On a server the
    read goes through the pool, under the retry wrapper's deadline with no retries, so a
    frozen server is found out in seconds.
    """
    table: Any = Task.__table__
    query = (
        select(table.c.id).where(table.c.id == task_id)
        if task_id is not None
        else select(table.c.id).limit(1)
    )
    if engine.dialect.name == "sqlite":
        try:
            with _fresh_engine(engine).connect().execution_options(rqjobs_readonly=True) as conn:
                conn.execute(query).all()
        except SQLAlchemyError as exc:
            text = short_reason(exc)
            if "locked" in text.lower() or "busy" in text.lower():
                return None
            return text
        return None
    try:
        run_with_retry(
            engine,
            lambda conn: conn.execute(query).all(),
            budget_s=0,
            what="check the task database",
            readonly=True,
        )
    except (SQLAlchemyError, DatabaseError) as exc:
        return short_reason(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
    return None


def release_pool(engine: Engine) -> None:
    """Close the pooled connections of a SQLite engine (see the module's docstring)."""
    if engine.dialect.name == "sqlite":
        engine.dispose()
