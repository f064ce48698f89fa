"""Schema versioning through Alembic, checked cheaply on every process's first use.

A brand-new (empty) database is created at the newest revision automatically, so the
embedded default needs no set-up step. A database at an older revision is never changed
behind the user's back: every command refuses it with :class:`SchemaOutdated` until
``rqjobs db upgrade`` has run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from rqjobs.exceptions import DatabaseError, SchemaOutdated

#: the newest migration; tests check it matches the migrations folder
SCHEMA_HEAD = "0007"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: how long a failed upgrade waits for a concurrent one to finish before reporting failure
_CONCURRENT_UPGRADE_WAIT_S = 10.0


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database, or None for a database with no tasks table."""
    try:
        with engine.connect().execution_options(rqjobs_readonly=True) as conn:
            try:
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
                return row[0] if row else None
            except SQLAlchemyError:
                conn.rollback()
            if inspect(conn).has_table("tasks"):
                return "unversioned"
            return None
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open the task database: {_short(exc)}") from None


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision``; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    if before == "unversioned":
        raise DatabaseError("the database has a tasks table that rqjobs did not create")
    if before is not None and before not in _known_revisions():
        raise _unknown_revision(before)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    except SQLAlchemyError as exc:
        # another process may be creating the schema at the same moment (MariaDB commits
        # each DDL statement at once, so its migrations can be seen half-way): give it time
        deadline = time.monotonic() + _CONCURRENT_UPGRADE_WAIT_S
        while True:
            if current_revision(engine) == SCHEMA_HEAD:
                return before, SCHEMA_HEAD
            if time.monotonic() > deadline:
                raise DatabaseError(f"migration failed: {_short(exc)}") from None
            time.sleep(0.2)
    return before, current_revision(engine) or ""


def ensure_schema(engine: Engine) -> None:
    """Create an empty database's schema; refuse an outdated one."""
    revision = current_revision(engine)
    if revision == SCHEMA_HEAD:
        return
    if revision is None:
        upgrade(engine)
        return
    if revision == "unversioned":
        raise DatabaseError("the database has a tasks table that rqjobs did not create")
    if revision in _known_revisions():
        raise SchemaOutdated(
            f"the task database is at schema {revision}, this rqjobs needs {SCHEMA_HEAD}: "
            "run `rqjobs db upgrade`"
        )
    raise _unknown_revision(revision)


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}


def _unknown_revision(revision: str) -> DatabaseError:
    return DatabaseError(
        f"the task database is at schema {revision}, unknown to this rqjobs (made by a newer version?)"
    )


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]
