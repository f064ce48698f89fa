"""Rich renderables for the CLI. Pure functions of rows: no I/O, no printing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from rqjobs.status import TaskStatus
from rqjobs.store.repository import TaskRecord
from rqjobs.timeparse import format_duration

STATUS_STYLES = {
    TaskStatus.QUEUED.value: "cyan",
    TaskStatus.SCHEDULED.value: "blue",
    TaskStatus.RUNNING.value: "yellow",
    TaskStatus.FINISHED.value: "green",
    TaskStatus.FAILED.value: "bold red",
    TaskStatus.CANCELED.value: "magenta",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    seconds = (now - when).total_seconds()
    if seconds < 0:
        return "in " + format_duration(-seconds)
    return format_duration(seconds) + " ago"


def status_table(rows: Sequence[TaskRecord], counts: Mapping[str, int]) -> Table:
    """Newest first; fits 80 columns (descriptions elide); failed rows stand out."""
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("TASK", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("DESCRIPTION", no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PROG", justify="right", no_wrap=True)
    table.add_column("TRY", justify="right", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("TOOK", justify="right", no_wrap=True)
    now = datetime.now(timezone.utc)
    for row in rows:
        style = "red" if row.status == TaskStatus.FAILED.value else None
        table.add_row(
            str(row.id),
            row.name,
            row.description,
            status_text(row.status),
            f"{row.progress}%",
            str(row.attempts),
            age(row.created_at, now),
            format_duration(row.duration_s),
            style=style,
        )
    footer = "  ".join(f"{status}: {n}" for status, n in counts.items() if n) or "no tasks"
    table.caption = f"{len(rows)} shown · {footer}"
    table.caption_justify = "left"
    return table


def _when(value: datetime | None) -> str:
    return value.astimezone().isoformat(timespec="seconds") if value else "-"


def task_detail(row: TaskRecord) -> Group:
    """Every field of the row, the result as pretty JSON and the log as text."""
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold", no_wrap=True)
    info.add_column()
    info.add_row("id", str(row.id))
    info.add_row("task", row.name)
    info.add_row("description", row.description)
    info.add_row("status", status_text(row.status))
    info.add_row(
        "progress", f"{row.progress}%" + (f"  {row.progress_message}" if row.progress_message else "")
    )
    info.add_row("queue", row.queue)
    info.add_row("args", json.dumps(row.args, ensure_ascii=False))
    info.add_row("kwargs", json.dumps(row.kwargs, ensure_ascii=False))
    retry = f"{row.max_retries} retries" + (
        f", intervals {row.retry_intervals} s" if row.retry_intervals else ""
    )
    info.add_row("attempts", f"{row.attempts} ({retry})")
    info.add_row("timeout", f"{row.timeout_s} s")
    info.add_row("created", _when(row.created_at))
    info.add_row("enqueued", _when(row.enqueued_at))
    if row.scheduled_for:
        info.add_row("scheduled for", _when(row.scheduled_for))
    info.add_row("started", _when(row.started_at))
    info.add_row("finished", _when(row.finished_at))
    info.add_row("duration", format_duration(row.duration_s))
    info.add_row("worker", row.worker or "-")
    parts: list[Any] = [info]
    if row.result is not None:
        parts.append(
            Panel(
                Syntax(json.dumps(row.result, indent=2, ensure_ascii=False), "json", word_wrap=True),
                title="result",
            )
        )
    if row.log:
        parts.append(Panel(Text(row.log.rstrip()), title="log", border_style="red"))
    return Group(*parts)


def tasks_table(tasks: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("TASK", no_wrap=True)
    table.add_column("PARAMETERS")
    table.add_column("WHAT IT DOES")
    for task in tasks:
        params = []
        for p in task["parameters"]:
            text = f"{p['option']} {p['type']}"
            if p["required"]:
                text += " (required)"
            elif p["default"] is not None:
                text += f" = {p['default']!r}"
            if not p["cli_type"]:
                text += " [via --kwargs]"
            params.append(text)
        table.add_row(task["name"], "\n".join(params) or "-", task["summary"])
    return table
