"""One SQLAlchemy engine per database URL per process, set up for many writers.

* SQLite: WAL, ``synchronous=NORMAL``, a busy timeout, and transactions that begin
  with ``BEGIN IMMEDIATE`` (a deferred transaction that reads then writes fails at once
  with SQLITE_BUSY_SNAPSHOT, which the busy timeout never retries). Read-only
  connections (``execution_options(rqjobs_readonly=True)``) begin deferred so that
  ``rqjobs status`` never waits for a writer.
* Fork safety: a connection must never be shared by a worker and its forked work
  horse, so every engine's pool is dropped (without closing the parent's sockets) in
  the child after ``fork``.
* The schema is checked once, when the engine is made (see :mod:`rqjobs.store.schema`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from rqjobs import defaults
from rqjobs.exceptions import ConfigError, DatabaseError

_engines: dict[str, Engine] = {}
_lock = threading.Lock()
_fork_hook_installed = False


def _dispose_after_fork() -> None:
    for engine in _engines.values():
        engine.dispose(close=False)


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # hand transaction control to SQLAlchemy's "begin" event below
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(defaults.SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get("rqjobs_single_statement"):
            return  # one statement is its own transaction in SQLite; its COMMIT is then a no-op
        if options.get("rqjobs_readonly"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_store_engine(url: str) -> Engine:
    """A new engine for ``url`` (no schema check); most callers want :func:`get_engine`."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(f"invalid database_url: {exc}") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": backend != "sqlite"}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from rqjobs.private import create_private_file, ensure_private_dir

            database = Path(parsed.database).expanduser()
            ensure_private_dir(database.parent)
            # SQLite gives the -wal and -shm files the database file's mode
            create_private_file(database)
        kwargs["connect_args"] = {"timeout": defaults.SQLITE_BUSY_TIMEOUT_S}
    elif backend in ("postgresql", "mysql", "mariadb"):
        # a dead or unreachable host must fail a connection attempt, not hang it (libpq
        # waits forever by default); a timeout given in the URL wins
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": defaults.DB_CONNECT_TIMEOUT_S}
        if backend != "postgresql":
            # MariaDB closes idle connections after wait_timeout (8 h by default)
            kwargs["pool_recycle"] = 3600
    try:
        parsed.get_dialect()
    except Exception:
        raise ConfigError(
            f"database_url names an unknown database type {parsed.drivername!r} "
            "(use sqlite:///PATH, postgresql+psycopg://..., or mysql+pymysql://...)"
        ) from None
    try:
        engine = create_engine(parsed, **kwargs)
    except ModuleNotFoundError as exc:
        extra = {"postgresql": "postgres", "mysql": "mysql"}.get(parsed.get_backend_name(), "")
        hint = f" (pip install 'rqjobs[{extra}]')" if extra else ""
        raise DatabaseError(
            f"the driver for {parsed.drivername} is not installed: {exc.name}{hint}"
        ) from None
    if engine.dialect.name == "sqlite":
        _setup_sqlite(engine)
    return engine


def get_engine(url: str, *, check_schema: bool = True) -> Engine:
    """The process's engine for ``url``, made (and its schema checked) on first use."""
    global _fork_hook_installed
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_store_engine(url)
            if check_schema:
                from rqjobs.store.schema import ensure_schema

                ensure_schema(engine)
            _engines[url] = engine
            if not _fork_hook_installed:
                os.register_at_fork(after_in_child=_dispose_after_fork)
                _fork_hook_installed = True
    return engine


def forget_engines() -> None:
    """Dispose and drop every cached engine (tests, and after `db upgrade`)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
