"""Turning rows and counts into what the pages draw: timelines, chart bars, short times.

No Flask here: plain functions over library objects, so they are tested without a server.
Everything returned is data; the templates escape it (Jinja autoescape), so a task's text
can never become markup.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rqjobs.store.repository import TaskRecord
from rqjobs.store.search import Window
from rqjobs.timeparse import format_duration

#: a header line of the ``log`` column: ``--- attempt 2 failed at 2026-...+00:00 on host:1 ---``
_HEADER = re.compile(r"^--- (?P<what>.+?) ---$")
_AT = re.compile(r" at (?P<when>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?)")


@dataclass(frozen=True)
class Event:
    """One point on a task's timeline."""

    when: datetime | None
    title: str
    #: ``ok``, ``bad``, ``info``: the dot's colour
    kind: str
    detail: str = ""


def _parse_when(text: str) -> datetime | None:
    match = _AT.search(text)
    if not match:
        return None
    try:
        when = datetime.fromisoformat(match.group("when").replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def log_blocks(log: str | None) -> list[tuple[str, str]]:
    """The log column as ``(header, body)`` blocks, in the order they were written."""
    blocks: list[tuple[str, list[str]]] = []
    for line in (log or "").splitlines():
        match = _HEADER.match(line)
        if match:
            blocks.append((match.group("what"), []))
        elif blocks:
            blocks[-1][1].append(line)
        elif line.strip():
            blocks.append(("log", [line]))
    return [(header, "\n".join(body).strip("\n")) for header, body in blocks]


def timeline(task: TaskRecord) -> list[Event]:
    """Created, every failed attempt and operator action from the log, the last start, the end."""
    events = [Event(task.created_at, "created", "info", f"on queue {task.queue}")]
    if task.scheduled_for is not None and task.status == "scheduled":
        events.append(Event(task.scheduled_for, "due", "info", "scheduled to run"))
    for header, body in log_blocks(task.log):
        kind = "bad" if ("failed" in header or "not enqueued" in header) else "info"
        title = _AT.sub("", header)
        lines = body.splitlines()
        events.append(Event(_parse_when(header), title, kind, lines[-1] if lines else ""))
    if task.started_at is not None:
        where = f" on {task.worker}" if task.worker else ""
        events.append(Event(task.started_at, f"attempt {task.attempts} started{where}", "info"))
    if task.finished_at is not None and task.status in ("finished", "failed", "canceled"):
        kind = {"finished": "ok", "failed": "bad"}.get(task.status, "info")
        took = format_duration(task.duration_s) if task.started_at else ""
        events.append(Event(task.finished_at, task.status, kind, f"after {took}" if took else ""))
    dated = [e for e in events if e.when is not None]
    if len(dated) == len(events):
        events.sort(key=lambda e: e.when or task.created_at)  # stable: the log's order breaks ties
    return events


def pretty_json(value: Any) -> str:
    """A result as indented JSON text (the template escapes it)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """``3m05s ago``, ``in 2h00m``, or ``-``."""
    if when is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    seconds = (now - when).total_seconds()
    if seconds >= 0:
        return f"{format_duration(seconds)} ago"
    return f"in {format_duration(-seconds)}"


def local_time(when: datetime | None) -> str:
    """An ISO time in UTC to the second; the page's script shows it in the viewer's zone."""
    return when.astimezone(timezone.utc).isoformat(timespec="seconds") if when else ""


@dataclass(frozen=True)
class Bar:
    """One rectangle of a chart, in SVG user units."""

    x: float
    y: float
    width: float
    height: float
    css: str
    label: str


CHART_WIDTH = 600
CHART_HEIGHT = 120


def chart_bars(window: Window) -> tuple[list[Bar], int]:
    """Stacked bars (finished below, failed on top) per time slice; and the tallest total."""
    buckets = len(window.finished)
    tallest = max((f + x for f, x in zip(window.finished, window.failed, strict=True)), default=0)
    scale = (CHART_HEIGHT - 2) / tallest if tallest else 0.0
    slot = CHART_WIDTH / max(buckets, 1)
    bars = []
    for i, (done, failed) in enumerate(zip(window.finished, window.failed, strict=True)):
        start = window.since.timestamp() + i * window.bucket_s
        when = datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        label = f"{when}: {done} finished, {failed} failed"
        x = i * slot + 1
        width = max(slot - 2, 1)
        h_done, h_failed = done * scale, failed * scale
        bars.append(Bar(x, CHART_HEIGHT - h_done, width, h_done, "bar-ok", label))
        bars.append(Bar(x, CHART_HEIGHT - h_done - h_failed, width, h_failed, "bar-bad", label))
        # an invisible full-height bar carries the tooltip for empty slices too
        bars.append(Bar(x, 0, width, CHART_HEIGHT, "bar-hit", label))
    return bars, tallest


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
