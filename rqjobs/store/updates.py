"""The UPDATE statements of row transitions, built once per shape (``TaskStore._transition``).

Split from :mod:`rqjobs.store.repository` to keep modules short; ``unique_values`` is
where every transition keeps ``unique_active`` right (:mod:`rqjobs.store.unique`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select, update

from rqjobs.store.models import Task
from rqjobs.store.retry import values_landed
from rqjobs.store.unique import CLEAR, RESTORE

_table = Task.__table__
_c = _table.c

_update_cache: dict[tuple[Any, ...], Any] = {}


def update_statement(
    from_statuses: tuple[str, ...],
    keys: tuple[str, ...],
    append_log: bool,
    bump_attempts: bool,
    unique: str | None = None,
) -> Any:
    """One UPDATE per transition shape, with bound parameters, built once per process.

    ``update().values(literal, ...)`` per call made SQLAlchemy derive a cache key from
    every value, which cost more than the statement itself. ``unique``: what the UPDATE
    does to ``unique_active`` (:func:`rqjobs.store.unique.key_change`).
    """
    cache_key = (from_statuses, keys, append_log, bump_attempts, unique)
    stmt = _update_cache.get(cache_key)
    if stmt is None:
        values: dict[str, Any] = {key: bindparam(f"v_{key}", type_=_c[key].type) for key in keys}
        if append_log:
            values["log"] = func.coalesce(_c.log, "") + bindparam("log_entry", type_=_c.log.type)
        if bump_attempts:
            values["attempts"] = _c.attempts + 1
        values.update(unique_values(unique))
        stmt = (
            update(_table)
            .where(and_(_c.id == bindparam("task_id"), _c.status.in_(list(from_statuses))))
            .values(values)
        )
        _update_cache[cache_key] = stmt
    return stmt


def unique_values(unique: str | None) -> dict[str, Any]:
    """A final row gives its unique key up; a row made live again takes it back."""
    if unique == CLEAR:
        return {"unique_active": None}
    if unique == RESTORE:
        return {"unique_active": _c.unique_key}
    return {}


def landed_check(
    task_id: int, values: dict[str, Any], log_entry: str | None
) -> Callable[[Connection], bool | None]:
    """After a COMMIT whose reply was lost: did that update land? (None: no, try again)."""

    def landed(conn: Connection) -> bool | None:
        row = conn.execute(select(_table).where(_c.id == task_id)).first()
        if row is None or not values_landed(row, values):
            return None
        if log_entry is not None and not (row._mapping["log"] or "").endswith(log_entry):
            return None
        return True

    return landed
