"""Rich renderables for the CLI. Pure functions of rows: no I/O, no printing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
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


def _status_cell(row: TaskRecord) -> Text:
    text = status_text(row.status)
    if row.status == TaskStatus.RUNNING.value:
        text.append(f" {row.progress}%")
    return text


def _build_status_table(rows: Sequence[TaskRecord], desc_width: int | None) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("TASK", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("DESCRIPTION", no_wrap=True, overflow="ellipsis", max_width=desc_width)
    table.add_column("STATUS", no_wrap=True)
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
            _status_cell(row),
            str(row.attempts),
            age(row.created_at, now),
            format_duration(row.duration_s),
            style=style,
        )
    return table


class StatusTable:
    """The ``rqjobs status`` table, newest first; failed rows stand out.

    It fits the console's width (80 columns included): only the description column
    gives way, eliding its end, so ids, statuses and times are always shown whole.
    """

    def __init__(self, rows: Sequence[TaskRecord], counts: Mapping[str, int]) -> None:
        self.rows = rows
        self.counts = counts

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = _build_status_table(self.rows, None)
        needed = Measurement.get(console, options.update_width(10_000), table).maximum
        if needed > options.max_width:
            natural = max((cell_len(r.description) for r in self.rows), default=11)
            width = max(8, natural - (needed - options.max_width))
            table = _build_status_table(self.rows, width)
        yield table
        # the footer is not a caption: a caption wraps at the table's width, this at the console's
        footer = ", ".join(f"{n} {status}" for status, n in self.counts.items() if n) or "no tasks"
        yield Text(f"{len(self.rows)} shown · {footer}")


def status_table(rows: Sequence[TaskRecord], counts: Mapping[str, int]) -> StatusTable:
    """Newest first; fits the terminal (descriptions elide); failed rows stand out."""
    return StatusTable(rows, counts)


def _when(value: datetime | None) -> str:
    return value.astimezone().isoformat(timespec="seconds") if value else "-"


def _short_when(value: datetime | None) -> str:
    """Local time to the second, without the offset (narrow columns)."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _gap(start: datetime | None, end: datetime | None, what: str) -> str:
    if start is None or end is None or end < start:
        return ""
    return f"  ({what} {format_duration((end - start).total_seconds())})"


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
    if row.schedule:
        tick = f"tick {_when(row.schedule_tick)}" if row.schedule_tick else "run by hand, outside the ticks"
        info.add_row("schedule", Text(f"{row.schedule} ({tick})"))
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
    info.add_row("started", _when(row.started_at) + _gap(row.enqueued_at, row.started_at, "waited"))
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


# -- tail ---------------------------------------------------------------------------------


def last_log_line(log: str | None) -> str:
    """The last line of the log that is not a header: usually the exception."""
    for line in reversed((log or "").splitlines()):
        line = line.strip()
        if line and not line.startswith("---"):
            return line
    return ""


def change_detail(row: TaskRecord) -> str:
    """The few words after the progress in a tail line: message, time taken, or why it ended."""
    if row.status == TaskStatus.RUNNING.value:
        return row.progress_message or ""
    if row.status == TaskStatus.FINISHED.value:
        return f"took {format_duration(row.duration_s)}"
    if row.status in (TaskStatus.FAILED.value, TaskStatus.CANCELED.value):
        return last_log_line(row.log)
    parts = []
    if row.status == TaskStatus.SCHEDULED.value and row.scheduled_for:
        parts.append(f"at {row.scheduled_for.astimezone().isoformat(timespec='seconds')}")
    if row.attempts:
        parts.append(f"retry after attempt {row.attempts}")
    return ", ".join(parts)


def change_line(row: TaskRecord, when: datetime) -> str:
    """One line per change, for pipes: ``2026-11-29T10:00:01 #42 send-mail running 50% resizing``."""
    stamp = when.astimezone().replace(tzinfo=None).isoformat(timespec="seconds")
    line = f"{stamp} #{row.id} {row.name} {row.status} {row.progress}%"
    detail = " ".join(change_detail(row).split())  # one line, whatever the message holds
    return f"{line} {detail}" if detail else line


def ended_summary(row: TaskRecord) -> Text:
    """The line a task leaves above the live view when it ends."""
    marks = {TaskStatus.FINISHED.value: "✓", TaskStatus.FAILED.value: "✗", TaskStatus.CANCELED.value: "■"}
    text = Text(f"{marks.get(row.status, '·')} ", style=STATUS_STYLES.get(row.status, ""))
    text.append(f"#{row.id} ", style="bold")
    text.append(f"{row.name} ")
    text.append(row.status, style=STATUS_STYLES.get(row.status, ""))
    detail = change_detail(row)
    if detail:
        text.append(f"  {detail}", style="dim" if row.status == TaskStatus.FINISHED.value else "")
    text.append(f"  ({row.description})", style="dim")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class TailView:
    """The live part of ``rqjobs tail``: one progress bar per waiting or running task."""

    def __init__(self, rows: Sequence[TaskRecord], heading: str, more: int = 0) -> None:
        self.rows = rows
        self.heading = heading
        self.more = more

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.progress_bar import ProgressBar

        yield Text(self.heading, style="dim", no_wrap=True, overflow="ellipsis")
        if not self.rows:
            return
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True, max_width=16, overflow="ellipsis")
        table.add_column(no_wrap=True, width=20)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        # leave room for the heading and the "more" line
        shown = self.rows[: max(1, options.size.height - 3)] if options.size.height else self.rows
        for row in shown:
            waiting = row.status != TaskStatus.RUNNING.value
            bar = ProgressBar(total=100, completed=0 if waiting else row.progress, width=20)
            state = status_text(row.status)
            if not waiting:
                state.append(f" {format_duration(row.duration_s)}", style="dim")
            table.add_row(
                f"#{row.id}",
                row.name,
                bar,
                "" if waiting else f"{row.progress}%",
                state,
                Text(change_detail(row), style="dim" if waiting else ""),
            )
        yield table
        hidden = self.more + len(self.rows) - len(shown)
        if hidden > 0:
            yield Text(f"… and {hidden} more", style="dim")


# -- retry / cancel -----------------------------------------------------------------------


def outcome_line(task_id: int, ok: bool, action: str, detail: str) -> Text:
    text = Text(f"#{task_id} ", style="bold")
    text.append(action, style="green" if ok else "bold red")
    if detail:
        text.append(f": {detail}")
    return text


# -- stats --------------------------------------------------------------------------------

SPARK_CHARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, scaled to the largest; zero is a blank, any other at least ▁."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    out = []
    for value in values:
        if value <= 0:
            out.append(" ")
        else:
            out.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, (value * len(SPARK_CHARS) - 1) // top)])
    return "".join(out)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.0f}%"


def stats_view(stats: Any, window: str) -> Group:
    """The per-name table and a chart of runs ended over time (finished and failed)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("TASK", no_wrap=True, max_width=18, overflow="ellipsis")
    for header in ("DONE", "FAILED", "CANCEL", "ACTIVE"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("FAIL%", justify="right", no_wrap=True)
    table.add_column("P50", justify="right", no_wrap=True)
    table.add_column("P95", justify="right", no_wrap=True)
    table.add_column("MAX", justify="right", no_wrap=True)
    for task in stats.tasks:
        c = task.counts
        active = c["queued"] + c["scheduled"] + c["running"]
        style = "red" if c["failed"] else None
        table.add_row(
            task.name,
            str(c["finished"]),
            str(c["failed"]),
            str(c["canceled"]),
            str(active),
            _pct(task.failure_rate),
            format_duration(task.p50_s),
            format_duration(task.p95_s),
            format_duration(task.max_s),
            style=style,
        )
    if not stats.tasks:
        return Group(Text(f"no tasks {window}"))
    timeline = stats.timeline
    start = timeline.start.astimezone()
    end = timeline.end.astimezone()
    fmt = "%H:%M" if end - start <= timedelta(days=1) else "%m-%d %H:%M"
    chart = Table.grid(padding=(0, 1))
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True)
    chart.add_column(no_wrap=True, style="dim")
    chart.add_row(
        "finished", Text(sparkline(timeline.finished), style="green"), f"max {max(timeline.finished)}"
    )
    chart.add_row("failed", Text(sparkline(timeline.failed), style="red"), f"max {max(timeline.failed)}")
    left, right = start.strftime(fmt), end.strftime(fmt)
    gap = max(1, len(timeline.finished) - len(left) - len(right))
    chart.add_row("", Text(f"{left}{' ' * gap}{right}", style="dim"), "")
    title = Text(f"tasks created {window}", style="bold", no_wrap=True, overflow="ellipsis")
    heading = Text(f"runs ended, per {format_duration(timeline.bucket_s)}", style="bold", no_wrap=True)
    return Group(title, table, Text(""), heading, chart)


def schedules_table(views: Sequence[Any]) -> Table:
    """``rqjobs schedule list``: one line per configured schedule (cells are data, not markup)."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in ("NAME", "TASK", "SPEC", "TIMEZONE", "NEXT TICK", "LAST TICK", "LAST ROW", "STATE"):
        table.add_column(title, overflow="fold")
    for view in views:
        last_row = Text("-")
        if view.last_task_id is not None:
            last_row = Text(f"#{view.last_task_id} ") + status_text(view.last_status or "")
        table.add_row(
            Text(view.spec.name),
            Text(view.spec.task),
            Text(view.spec.spec_text),
            Text(view.spec.timezone),
            _short_when(view.next_tick),
            _short_when(view.last_tick),
            last_row,
            Text(view.state, style="yellow" if view.state != "active" else ""),
        )
    return table
