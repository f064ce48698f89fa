"""Bounded retries of row reads and writes while the database is briefly unreachable.

A task's final state must reach its row even when the database restarts or the network
drops for a few seconds at the moment the task ends (the row never lies: docs/ARCHITECTURE.md,
"The row's life"). :func:`run_with_retry` runs one short transaction and, on an error that a later
attempt can cure (a dropped or refused connection, SQLite's "database is locked", a
deadlock), tries again with exponential backoff until ``budget_s`` is spent, then raises
:class:`~rqjobs.exceptions.DatabaseError` saying what failed.

An error where the database answered (a DataError, an IntegrityError, a statement the
server refuses) is never reported as an outage: those are raised as they are, and a
connection that drops again and again right after answering the pool's ping (MariaDB does
that for a packet over ``max_allowed_packet``) is reported as the statement's fault after
:data:`ANSWERED_DROPS_LIMIT` tries, not retried for the whole budget.

Where the failure happened decides whether a retry is safe:

* before the statement ran, or while it ran: nothing was committed (a server rolls back
  a transaction whose connection dropped), so a retry is simply a retry;
* during COMMIT: the commit may or may not have landed. The caller's ``verify`` then
  looks at the row to tell "my earlier attempt landed" from "nothing happened", so a
  conditional transition retried after a lost acknowledgement still reports ``True``
  and an insert is not made twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError

from rqjobs import defaults
from rqjobs.exceptions import DatabaseError
from rqjobs.store import watchdog

log = logging.getLogger("rqjobs.store")

T = TypeVar("T")

#: first wait between attempts, doubled each time up to the cap (seconds)
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0

#: MySQL/MariaDB error codes worth another attempt: lock wait timeout, deadlock, and the
#: client's "can't connect", "server has gone away", "lost connection" family
_MYSQL_TRANSIENT = {1205, 1213, 2002, 2003, 2006, 2013, 2055}

#: a statement whose connection drops this many times in a row, each time on a connection
#: that had just answered the pool's ping, is the cause itself (MariaDB closes the
#: connection on a packet over max_allowed_packet): it is not retried for ``budget_s``
ANSWERED_DROPS_LIMIT = 3


def is_transient(exc: BaseException, dialect_name: str) -> bool:
    """Would the same statement, tried again a little later, plausibly succeed?"""
    if isinstance(exc, DisconnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):
        # integrity, data and programming errors fail the same way every time
        return False
    if dialect_name == "sqlite":
        # SQLite's OperationalError also covers "no such table", a read-only file...;
        # only contention is cured by waiting
        text = str(getattr(exc, "orig", exc)).lower()
        return "locked" in text or "busy" in text
    if dialect_name in ("mysql", "mariadb"):
        code = getattr(getattr(exc, "orig", None), "args", (None,))[0]
        return code in _MYSQL_TRANSIENT or isinstance(exc, InterfaceError)
    # PostgreSQL and others: OperationalError is the connection/server-state family
    return True


def _dropped(exc: BaseException) -> bool:
    """Did the connection drop (not a deadlock or a lock wait, which contention explains)?"""
    return isinstance(exc, DisconnectionError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def short_reason(exc: BaseException) -> str:
    """The first line of the driver's message, without SQLAlchemy's SQL and links."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def run_with_retry(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    budget_s: float,
    what: str,
    readonly: bool = False,
    single_statement: bool = False,
    verify: Callable[[Connection], T | None] | None = None,
) -> T:
    """Run ``work`` in one transaction, retrying transient failures for ``budget_s``.

    ``verify`` is called (in a fresh transaction) only when an earlier attempt failed
    during COMMIT: it returns the value that attempt would have returned if it landed,
    or None if it did not (then ``work`` runs again).

    Each attempt is cut (its socket shut down by :mod:`rqjobs.store.watchdog`) once the
    budget is spent, or ``DB_MIN_ATTEMPT_S`` after it began if that is later; SQLAlchemy
    may then try one new connection, itself bounded by the connect timeout. So a server
    that stops answering holds the caller about ``budget_s`` plus the connect timeout at
    most, never indefinitely.
    """
    autocommit = _autocommit_options(engine) if single_statement and not readonly else None
    started = time.monotonic()
    deadline = started + budget_s
    delay = FIRST_DELAY_S
    attempts = 0
    ambiguous = False
    answered_drops = 0  # failures in a row that came after the server answered the ping
    while True:
        attempts += 1
        phase = "connect"
        attempt_deadline = max(deadline, time.monotonic() + defaults.DB_MIN_ATTEMPT_S)
        attempt = None
        try:
            with watchdog.armed(attempt_deadline, enabled=engine.dialect.name != "sqlite") as attempt:
                conn = engine.connect()
                if readonly:
                    conn = conn.execution_options(rqjobs_readonly=True)
                elif autocommit:
                    # one INSERT/UPDATE needs no BEGIN ... COMMIT around it: the database makes
                    # it atomic, and two round trips fewer is most of a row write's cost
                    conn = conn.execution_options(**autocommit)
                with conn:
                    with conn.begin():
                        if ambiguous and verify is not None:
                            phase = "verify"
                            landed = verify(conn)
                            if landed is not None:
                                return landed
                        # an autocommitted statement is committed as it executes: a lost reply
                        # there is as ambiguous as a lost COMMIT reply
                        phase = "commit" if autocommit else "execute"
                        result = work(conn)
                        phase = "commit"  # the context manager commits on leaving
                return result
        except SQLAlchemyError as exc:
            if not ((attempt is not None and attempt.cut) or is_transient(exc, engine.dialect.name)):
                raise
            if phase == "commit" and not readonly:
                ambiguous = True
            cut = attempt is not None and attempt.cut
            reason = short_reason(exc)
            if cut:
                reason = f"no answer within {attempt_deadline - started:.0f} s ({reason})"
            # past "connect" the pool's pre-ping (servers) or the file (SQLite) answered; an
            # attempt the watchdog cut got no answer, whatever phase it was in
            answered = phase != "connect" and not cut
            answered_drops = answered_drops + 1 if answered and _dropped(exc) else 0
            tried = f"tried {attempts} time{'s' if attempts > 1 else ''}"
            if answered_drops >= ANSWERED_DROPS_LIMIT and engine.dialect.name != "sqlite":
                raise DatabaseError(
                    f"the task database answered, then failed this statement {answered_drops} times "
                    f"in a row (not an outage: the statement itself, e.g. a value over the server's "
                    f"max_allowed_packet): could not {what}: {reason}"
                ) from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if answered and engine.dialect.name != "sqlite":
                    raise DatabaseError(
                        f"the task database answered but could not {what} ({tried} over "
                        f"{budget_s:g} s): {short_reason(exc)}"
                    ) from exc
                raise DatabaseError(
                    f"the task database is unreachable: could not {what} "
                    f"({tried} over {budget_s:g} s): {reason}"
                ) from exc
            wait = min(delay * (0.5 + random.random()), remaining)
            log.warning(
                "could not %s (%s); retrying in %.2f s (%.0f s left)",
                what,
                reason,
                wait,
                remaining,
            )
            time.sleep(wait)
            delay = min(delay * 2, MAX_DELAY_S)


def _autocommit_options(engine: Engine) -> dict[str, Any] | None:
    """How to run one statement as its own transaction, where that saves round trips."""
    if engine.dialect.name == "sqlite":
        return {"rqjobs_single_statement": True}  # see rqjobs.store.engine: no BEGIN is sent
    if engine.dialect.name == "postgresql":
        return {"isolation_level": "AUTOCOMMIT"}  # psycopg switches client-side: no round trip
    return None  # MySQL's driver would send SET autocommit twice: no saving


def values_landed(row: Any, values: dict[str, Any]) -> bool:
    """Does ``row`` hold every plain value in ``values``? (SQL expressions are skipped.)"""
    from sqlalchemy.sql import ClauseElement

    if row is None:
        return False
    mapping = row._mapping
    return all(mapping[key] == value for key, value in values.items() if not isinstance(value, ClauseElement))
