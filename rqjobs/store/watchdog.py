"""A deadline on every database round trip of a row read or write, enforced from outside.

A PostgreSQL or MariaDB server that stops answering while its host's kernel still
acknowledges packets (a frozen process, a stopped proxy, a hung VM) leaves a client waiting
forever: keepalives and ``tcp_user_timeout`` see a healthy connection, and libpq has no
read timeout at all. A worker blocked so cannot dequeue or watch its work horse (issue 11).

So :func:`rqjobs.store.retry.run_with_retry` arms a deadline for each attempt
(:func:`armed`), the pool's checkout hook (:mod:`rqjobs.store.engine`) tells the armed
attempt which connection it uses (:func:`track`), and one daemon thread shuts down the
socket of any attempt past its deadline. The blocked call then fails at once with the
driver's "connection lost" error, which the retry wrapper treats like any dropped
connection. SQLite has no socket and is never cut.

Fork safety: the horse is forked from the worker's main thread; the child gets a fresh
lock and no armed attempts (``os.register_at_fork``), and starts its own thread on first use.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

#: how often the watchdog looks while attempts are armed (seconds)
_TICK_S = 0.1

_lock = threading.Lock()
_armed: dict[int, _Attempt] = {}
_thread: threading.Thread | None = None
_local = threading.local()


class _Attempt:
    __slots__ = ("connections", "cut", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connections: list[Any] = []
        self.cut = False


def _socket_fd(dbapi_connection: Any) -> int | None:
    """The socket of a psycopg or PyMySQL connection, or None (SQLite, closed)."""
    try:
        pgconn = getattr(dbapi_connection, "pgconn", None)
        if pgconn is not None:  # psycopg 3
            fd = pgconn.socket
            return int(fd) if fd is not None and fd >= 0 else None
        sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL
        if sock is not None:
            fd = sock.fileno()
            return fd if fd >= 0 else None
    except Exception:
        return None
    return None


def _cut(dbapi_connection: Any) -> None:
    """Shut the connection's socket down: whoever waits on it gets an error at once."""
    fd = _socket_fd(dbapi_connection)
    if fd is None:
        return
    try:
        # a duplicate descriptor: shutdown() acts on the socket itself, and closing the
        # duplicate leaves the driver's own descriptor for the driver to close
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


#: the thread ends after this long with nothing armed (a busy process keeps one thread)
_LINGER_S = 10.0


def _watch() -> None:
    global _thread
    idle_since = time.monotonic()
    while True:
        time.sleep(_TICK_S)
        now = time.monotonic()
        with _lock:
            if _armed:
                idle_since = now
            elif now - idle_since > _LINGER_S:
                _thread = None
                return
            late = [a for a in _armed.values() if a.deadline <= now and a.connections]
            for attempt in late:
                attempt.cut = True
            victims = [c for a in late for c in a.connections]
        for connection in victims:
            _cut(connection)


@contextlib.contextmanager
def armed(deadline: float, *, enabled: bool = True) -> Iterator[_Attempt]:
    """Within the block, the calling thread's database connections are cut at ``deadline``
    (``time.monotonic()``); ``attempt.cut`` then says the watchdog did it. With ``enabled``
    false (SQLite: no socket) nothing is armed."""
    global _thread
    attempt = _Attempt(deadline)
    if not enabled:
        yield attempt
        return
    key = threading.get_ident()
    previous = getattr(_local, "attempt", None)
    with _lock:
        _armed[key] = attempt
        if _thread is None:
            _thread = threading.Thread(target=_watch, name="rqjobs-db-watchdog", daemon=True)
            _thread.start()
    _local.attempt = attempt
    try:
        yield attempt
    finally:
        _local.attempt = previous
        with _lock:
            if previous is None:
                _armed.pop(key, None)
            else:
                _armed[key] = previous


def track(dbapi_connection: Any) -> None:
    """Called on checkout: the calling thread's armed attempt (if any) now covers this connection."""
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    if attempt is None:
        return
    with _lock:
        attempt.connections.append(dbapi_connection)
        overdue = attempt.deadline <= time.monotonic()
    if overdue:  # e.g. a fresh connection made after the old one was cut
        attempt.cut = True
        _cut(dbapi_connection)


def overdue() -> bool:
    """Is the calling thread's armed attempt past its deadline (cut, or about to be)?"""
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    return attempt is not None and (attempt.cut or attempt.deadline <= time.monotonic())


def untrack(dbapi_connection: Any) -> None:
    """Called on checkin: a connection back in the pool is no longer this attempt's to cut."""
    attempt: _Attempt | None = getattr(_local, "attempt", None)
    if attempt is None:
        return
    with _lock:
        attempt.connections = [c for c in attempt.connections if c is not dbapi_connection]


def _after_fork_in_child() -> None:
    global _lock, _thread, _armed
    _lock = threading.Lock()
    _armed = {}
    _thread = None
    _local.__dict__.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
