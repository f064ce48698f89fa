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
* No call may hang on a server that stops answering (issue 11): PostgreSQL connections
  use TCP keepalives and ``tcp_user_timeout``, MariaDB ones read/write timeouts, and the
  pooled connection's liveness ping runs under the attempt's deadline
  (:mod:`rqjobs.store.watchdog`), which cuts the socket of a call past it.
* Fork safety of the periodic reconcile thread on SQLite: :func:`fork_gate` (see there).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
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


#: held by a thread while it runs SQLite statements that a fork must not cut in half, and
#: by every fork (``os.register_at_fork``): SQLite keeps process-wide mutexes (its memory
#: statistics, its inode table) that a thread may hold while the main thread forks the
#: work horse, and a child that inherits one locked hangs on its first query
_fork_gate = threading.RLock()


def _gate_before_fork() -> None:
    _fork_gate.acquire()


def _gate_after_fork_in_parent() -> None:
    _fork_gate.release()


def _gate_after_fork_in_child() -> None:
    global _fork_gate
    _fork_gate = threading.RLock()


os.register_at_fork(
    before=_gate_before_fork,
    after_in_parent=_gate_after_fork_in_parent,
    after_in_child=_gate_after_fork_in_child,
)


def fork_gate(engine: Engine) -> Any:
    """A context that keeps forks out while a non-main thread uses ``engine``.

    SQLite only (its library lives in this process); a server database's client holds no
    process-wide lock a child needs, and a frozen server must not hold up the fork.
    """
    return _fork_gate if engine.dialect.name == "sqlite" else contextlib.nullcontext()


@contextlib.contextmanager
def forking(on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold the fork gate around a fork, calling ``on_wait`` every half second while a
    SQLite pass in another thread still holds it (the caller is waiting, not stuck)."""
    gate = _fork_gate
    while not gate.acquire(timeout=0.5):
        on_wait()
    try:
        yield
    finally:
        gate.release()


def _setup_server(engine: Engine) -> None:
    """Pessimistic disconnect handling with a deadline: the ping SQLAlchemy's ``pool_pre_ping``
    would send, but after the armed attempt has learnt which socket to cut."""
    from sqlalchemy.exc import DisconnectionError, OperationalError

    from rqjobs.store import watchdog

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        record.info["rqjobs_fresh"] = True
        if hasattr(dbapi_connection, "_read_timeout"):
            # PyMySQL reads the handshake under read_timeout, given as the connect timeout
            # so a new connection to a frozen server gives up like a refused one; from
            # here on the (longer) socket timeouts apply
            dbapi_connection._read_timeout = defaults.DB_SOCKET_TIMEOUT_S
            dbapi_connection._write_timeout = defaults.DB_SOCKET_TIMEOUT_S

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        watchdog.track(dbapi_connection)
        if record.info.pop("rqjobs_fresh", False):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            if watchdog.overdue():
                # cut for its deadline: no new connection now (SQLAlchemy would make one on a
                # DisconnectionError, adding a connect timeout to the wait); this error
                # invalidates the pooled one and reaches the retry wrapper
                raise OperationalError("ping", None, exc, connection_invalidated=True) from exc
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            watchdog.untrack(dbapi_connection)


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _server_connect_args(backend: str, parsed: Any) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        # a dead or unreachable host must fail a connection attempt, not hang it (libpq
        # waits forever by default); a timeout given in the URL wins
        args["connect_timeout"] = defaults.DB_CONNECT_TIMEOUT_S
    if backend == "postgresql":
        # a peer that vanished (host down, cable cut) is noticed within ~30 s even when
        # idle or mid-write; a peer that ACKs but never answers is the watchdog's job
        tcp = {
            "keepalives": 1,
            "keepalives_idle": defaults.DB_KEEPALIVE_IDLE_S,
            "keepalives_interval": defaults.DB_KEEPALIVE_INTERVAL_S,
            "keepalives_count": defaults.DB_KEEPALIVE_COUNT,
            "tcp_user_timeout": int(defaults.DB_TCP_USER_TIMEOUT_S * 1000),
        }
    else:
        # PyMySQL's socket timeouts: during the handshake, the connect timeout (see
        # _setup_server); then a backstop for calls outside the retry wrapper
        connect_s = args.get("connect_timeout") or _int_or(
            parsed.query.get("connect_timeout"), defaults.DB_CONNECT_TIMEOUT_S
        )
        tcp = {"read_timeout": connect_s, "write_timeout": connect_s}
    args.update({key: value for key, value in tcp.items() if key not in parsed.query})
    return args


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


def create_store_engine(url: str, *, pooled: bool = True) -> Engine:
    """A new engine for ``url`` (no schema check); most callers want :func:`get_engine`.

    ``pooled=False``: every connection is opened for its use and closed after it.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(f"invalid database_url: {exc}") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if not pooled:
        from sqlalchemy.pool import NullPool

        kwargs["poolclass"] = NullPool
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from rqjobs.private import create_private_file, ensure_private_dir

            database = Path(parsed.database).expanduser()
            ensure_private_dir(database.parent)
            # SQLite gives the -wal and -shm files the database file's mode
            create_private_file(database)
        kwargs["connect_args"] = {"timeout": defaults.SQLITE_BUSY_TIMEOUT_S}
    elif backend in ("postgresql", "mysql", "mariadb"):
        kwargs["connect_args"] = _server_connect_args(backend, parsed)
        if backend != "postgresql" and pooled:
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
    else:
        _setup_server(engine)
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
