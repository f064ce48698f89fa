"""Checks on what a caller hands ``enqueue_task``, made before any row is written.

The databases refuse some input (a 1001-character description on PostgreSQL and
MariaDB) and SQLite accepts it; JSON has no NaN or infinity, and a lone surrogate
cannot be stored as UTF-8. Checking here makes every backend refuse the same input
the same way (exit 2, no row), and checks arguments against the parameter types the
task declares, which the CLI already knows for its options but ``--kwargs`` bypassed.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Mapping
from typing import Any

from rqjobs import defaults
from rqjobs.exceptions import InvalidTaskArguments
from rqjobs.tasks.registry import TaskSpec


def check_text(what: str, value: str, limit: int) -> None:
    """A text column's value: within its length, and encodable as UTF-8."""
    if len(value) > limit:
        raise InvalidTaskArguments(f"{what} is {len(value)} characters long; the limit is {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTaskArguments(f"{what} holds a lone surrogate, which is not valid UTF-8") from None


def _check_json_value(where: str, value: Any) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidTaskArguments(
                f"{where}: {value!r} is not a finite number (JSON has no NaN or infinity)"
            )
    elif isinstance(value, int):
        if abs(value) > defaults.JSON_INT_MAX:
            raise InvalidTaskArguments(f"{where}: the integer is out of range (beyond 64 bits)")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidTaskArguments(f"{where}: holds a lone surrogate, which is not valid UTF-8") from None
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json_value(f"{where}[{index}]", item)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check_json_value(f"{where} key", key)
            _check_json_value(f"{where}[{key!r}]", item)


def check_json(spec: TaskSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The arguments as JSON: serialisable, finite numbers, 64-bit integers, valid UTF-8."""
    try:
        json.dumps([args, kwargs], allow_nan=False)
    except (TypeError, ValueError) as exc:
        if not isinstance(exc, ValueError) or "Out of range float" not in str(exc):
            raise InvalidTaskArguments(f"{spec.name}: arguments must be JSON-serialisable: {exc}") from None
    for index, value in enumerate(args):
        _check_json_value(f"{spec.name}: argument {index + 1}", value)
    for name, value in kwargs.items():
        _check_json_value(f"{spec.name}: {name}", value)


#: a task function's resolved type hints: resolving them costs more than checking an
#: argument, and ``enqueue_many`` checks thousands of items of one task
_hint_cache: dict[Any, dict[str, Any]] = {}


def _hints(spec: TaskSpec) -> dict[str, Any]:
    hints = _hint_cache.get(spec.func)
    if hints is None:
        try:
            hints = typing.get_type_hints(spec.func)
        except Exception:  # an annotation that does not resolve: nothing to check against
            hints = {}
        _hint_cache[spec.func] = hints
    return hints


def _matches(value: Any, hint: Any) -> bool | None:
    """Does ``value`` fit ``hint``? None when the hint is not one the CLI knows."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        results = [_matches(value, arg) for arg in typing.get_args(hint)]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if not isinstance(value, list):
            return False
        results = [_matches(v, item) for v in value]
        return None if any(r is None for r in results) else all(results)
    return None


def _shown(value: Any) -> str:
    """The value as the caller wrote it, short; a value JSON cannot hold shows as its repr."""
    try:
        return json.dumps(value)[:80]
    except (TypeError, ValueError):
        return repr(value)[:80]


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def check_types(spec: TaskSpec, bound: Mapping[str, Any]) -> None:
    """Each argument of a declared str/int/float/bool/list type has that type."""
    hints = _hints(spec)
    for name, value in bound.items():
        hint = hints.get(name)
        if hint is None:
            continue
        if _matches(value, hint) is False:
            param = spec.signature.parameters.get(name)
            if param is not None and value is param.default:
                continue
            wanted = _TYPE_WORDS.get(
                hint, getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            )
            raise InvalidTaskArguments(
                f"{spec.name}: {name} (--{name.replace('_', '-')}) must be {wanted}, got {_shown(value)}"
            )
