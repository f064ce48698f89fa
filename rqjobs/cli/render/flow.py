"""Renderings of paused queues and concurrency limits (pure: no I/O, no printing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def paused_summary(paused: Sequence[Any]) -> str:
    """``paused: mail (since 12:03 by ann@web1:4242), reports (since ...)``, or '' when none.

    Local time, to the minute when it is today, with the date otherwise.
    """
    if not paused:
        return ""
    from datetime import datetime

    today = datetime.now().astimezone().date()
    parts = []
    for p in paused:
        when = p.paused_at.astimezone()
        shown = when.strftime("%H:%M") if when.date() == today else when.strftime("%Y-%m-%d %H:%M")
        by = f" by {p.paused_by}" if p.paused_by else ""
        parts.append(f"{p.queue} (since {shown}{by})")
    return "paused: " + ", ".join(parts)


def paused_to_dict(p: Any) -> dict[str, Any]:
    return {"queue": p.queue, "paused_at": p.paused_at.isoformat(), "paused_by": p.paused_by}
