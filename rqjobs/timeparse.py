"""Durations (``90``, ``30s``, ``10m``, ``2h``, ``1d``, ``1h30m``) and times (ISO 8601).

Shared by ``enqueue --in/--at``, ``status --since`` and ``prune --older-than``; kept
free of heavy imports because the CLI parses with it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from rqjobs.exceptions import InvalidInput

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration_s(text: str) -> float:
    """Seconds in ``text``: a bare number is seconds; units s, m, h, d, w combine (1h30m)."""
    value = text.strip().lower()
    if not value:
        raise InvalidInput("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS_S[match.group(2)]
            pos = match.end()
        if pos != len(value) or pos == 0:
            raise InvalidInput(f"not a duration: {text!r} (use e.g. 90, 30s, 10m, 2h, 1d)") from None
    if not math.isfinite(seconds):
        raise InvalidInput(f"not a duration: {text!r} (use e.g. 90, 30s, 10m, 2h, 1d)")
    if seconds < 0:
        raise InvalidInput(f"a duration must not be negative: {text!r}")
    return seconds


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a time without offset is local time. Returned timezone-aware."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"not a time: {text!r} (use ISO 8601, e.g. 2026-12-01T09:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time
    return parsed


def ceil_to_second(when: datetime) -> datetime:
    """``when`` rounded up to a whole second.

    RQ's ScheduledJobRegistry scores jobs in whole seconds (rounding down) and releases a
    job once the current whole second reaches its score, so a fractional time would run
    up to a second early; a whole second runs no earlier than the row says.
    """
    if when.microsecond:
        return when.replace(microsecond=0) + timedelta(seconds=1)
    return when


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``1h`` means one hour ago; anything else must be a time."""
    now = now or datetime.now(timezone.utc)
    try:
        return now - timedelta(seconds=parse_duration_s(text))
    except InvalidInput:
        pass  # not a duration: a time, then
    except (OverflowError, ValueError):
        raise InvalidInput(f"{text!r} reaches back before the year 1") from None
    try:
        return parse_time(text)
    except InvalidInput:
        raise InvalidInput(
            f"not a duration or a time: {text!r} (use e.g. 1h, 30m, 2d or 2026-11-29T10:00)"
        ) from None


def format_duration(seconds: float | None) -> str:
    """Human-readable: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return "-"
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
