"""Rich renderables and lines for ``rqjobs tail``. Pure functions of rows: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from rqjobs.cli.render.literal import literal, visible
from rqjobs.cli.render.tables import STATUS_STYLES, status_text
from rqjobs.status import TaskStatus
from rqjobs.store.repository import TaskRecord
from rqjobs.timeparse import format_duration


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
    if row.status == TaskStatus.DEFERRED.value:
        parts.append("after " + ", ".join(f"#{p}" for p in row.after))
    if row.status == TaskStatus.SCHEDULED.value and row.scheduled_for:
        parts.append(f"at {row.scheduled_for.astimezone().isoformat(timespec='seconds')}")
    if row.attempts:
        parts.append(f"retry after attempt {row.attempts}")
    return ", ".join(parts)


def change_line(row: TaskRecord, when: datetime) -> str:
    """One line per change, for pipes: ``2026-11-29T10:00:01 #42 send-mail running 50% resizing``."""
    stamp = when.astimezone().replace(tzinfo=None).isoformat(timespec="seconds")
    line = f"{stamp} #{row.id} {visible(row.name)} {row.status} {row.progress}%"
    detail = visible(" ".join(change_detail(row).split()))  # one line, whatever the message holds
    return f"{line} {detail}" if detail else line


def ended_summary(row: TaskRecord) -> Text:
    """The line a task leaves above the live view when it ends."""
    marks = {TaskStatus.FINISHED.value: "✓", TaskStatus.FAILED.value: "✗", TaskStatus.CANCELED.value: "■"}
    text = Text(f"{marks.get(row.status, '·')} ", style=STATUS_STYLES.get(row.status, ""))
    text.append(f"#{row.id} ", style="bold")
    text.append(f"{visible(row.name)} ")
    text.append(row.status, style=STATUS_STYLES.get(row.status, ""))
    detail = change_detail(row)
    if detail:
        text.append(f"  {visible(detail)}", style="dim" if row.status == TaskStatus.FINISHED.value else "")
    text.append(f"  ({visible(row.description)})", style="dim")
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
                literal(row.name),
                bar,
                "" if waiting else f"{row.progress}%",
                state,
                literal(change_detail(row), style="dim" if waiting else ""),
            )
        yield table
        hidden = self.more + len(self.rows) - len(shown)
        if hidden > 0:
            yield Text(f"… and {hidden} more", style="dim")
