"""Tasks whose parameters exercise the generated CLI: choices, flags, paths, times, reserved names."""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from rqjobs import InvalidTaskArguments, background_task


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def _refuse_negative(arguments: dict[str, Any]) -> None:
    if arguments["count"] < 0:
        raise ValueError("count must not be negative")


@background_task
def paint(
    color: Color,
    shade: Literal["light", "dark"] = "light",
    glossy: bool = False,
    where: Path | None = None,
    when: datetime | None = None,
    tags: list[str] | None = None,
    delay: int = 0,
    queue: str = "inner",
) -> dict:
    """Paint something (Google style).

    Args:
        color: The colour to paint with.
        shade (str): How light
            the paint is.
        delay: Seconds to wait first.
    """
    return {
        "color": type(color).__name__ + ":" + color.value,
        "where": type(where).__name__,
        "when": type(when).__name__,
        "glossy": glossy,
        "delay": delay,
        "queue": queue,
        "tags": tags,
    }


@background_task(validate=_refuse_negative)
def numpy_style(count: int, mode: Literal[1, 2] = 1) -> int:
    """Count things (NumPy style).

    Parameters
    ----------
    count : int
        How many things.
    mode : int
        Which mode to use.

    Returns
    -------
    int
    """
    return count * mode


@background_task
def sphinx_style(name: str) -> str:
    """Greet someone (Sphinx style).

    :param name: Who to greet.
    :returns: the greeting
    """
    return f"hello {name}"


@background_task(retries=3, retry_interval_s=1)
def refuses_in_worker(value: str) -> None:
    """Refuse its input only when it runs."""
    raise InvalidTaskArguments(f"cannot use {value!r}")
