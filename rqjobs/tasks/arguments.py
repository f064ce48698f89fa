"""A task's arguments back in the types its signature names, after their trip through JSON.

A job carries JSON: an Enum travels as its value, a path as a string, a datetime as
ISO 8601 (:func:`rqjobs.checks.check_task` makes them so). The worker turns them back
here, from the parameter annotations, so a task annotated ``color: Color`` receives a
``Color`` whether it was enqueued from Python or from the command line.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import PurePath
from typing import Any


def unwrap_optional(hint: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return hint


def type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The function's resolved annotations ({} when they cannot be resolved)."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # a forward reference the module cannot resolve: treat as unannotated
        return {}


def _convert(value: Any, hint: Any) -> Any:
    hint = unwrap_optional(hint)
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (list, tuple, set, Sequence) and isinstance(value, list):
        item = (typing.get_args(hint) or (Any,))[0]
        return [_convert(v, item) for v in value]
    if hint is Any or not isinstance(hint, type) or isinstance(value, hint):
        return value
    try:
        if issubclass(hint, enum.Enum):
            return hint(value)
        if issubclass(hint, PurePath) and isinstance(value, str):
            return hint(value)
        if issubclass(hint, datetime) and isinstance(value, str):
            return datetime.fromisoformat(value)
        if issubclass(hint, date) and isinstance(value, str):
            return date.fromisoformat(value)
    except ValueError:
        return value  # the task's own checks report it, in its words
    return value


def typed_arguments(
    func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """``args`` and ``kwargs`` converted to the types ``func``'s annotations name."""
    hints = type_hints(func)
    if not hints:
        return list(args), dict(kwargs)
    params = [p for p in inspect.signature(func).parameters.values() if p.kind <= p.POSITIONAL_OR_KEYWORD]
    typed_args = [
        _convert(v, hints.get(params[i].name, Any)) if i < len(params) else v for i, v in enumerate(args)
    ]
    typed_kwargs = {k: _convert(v, hints.get(k, Any)) for k, v in kwargs.items()}
    return typed_args, typed_kwargs


__all__ = ["type_hints", "typed_arguments", "unwrap_optional"]
