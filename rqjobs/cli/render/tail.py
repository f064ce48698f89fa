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
    text.no_wrap = True  # rich 15's print() ignores these: print it with no_wrap/overflow too
    text.overflow = "ellipsis"
    return text


#: the progress bar's width, and how narrow it may get before the description is cut away
BAR_WIDTH = 20
MIN_BAR_WIDTH = 8
NAME_MAX_WIDTH = 16


def _text_cell(row: TaskRecord) -> Text:
    """The last column, the one that gives way: the description, then what the task said."""
    waiting = row.status != TaskStatus.RUNNING.value
    text = literal(row.description, style="dim" if not waiting else "")
    detail = change_detail(row)
    if detail:
        text.append("  ")
        text.append_text(literal(" ".join(detail.split()), style="dim"))
    return text


class TailView:
    """The live part of ``rqjobs tail``: one progress bar per waiting or running task.

    Every column but the last has the width its content needs (the task name at most
    16); the last (description and progress message) takes what is left and is cut
    with an ellipsis, then the bar narrows. So on an 80-column terminal the id, the
    percentage and the status always show whole.
    """

    def __init__(self, rows: Sequence[TaskRecord], heading: str, more: int = 0) -> None:
        self.rows = rows
        self.heading = heading
        self.more = more

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.progress_bar import ProgressBar

        yield Text(self.heading, style="dim", no_wrap=True, overflow="ellipsis")
        if not self.rows:
            return
        # leave room for the heading and the "more" line
        shown = self.rows[: max(1, options.size.height - 3)] if options.size.height else self.rows
        cells = []
        for row in shown:
            waiting = row.status != TaskStatus.RUNNING.value
            state = status_text(row.status)
            if not waiting:
                state.append(f" {format_duration(row.duration_s)}", style="dim")
            percent = "" if waiting else f"{row.progress}%"
            cells.append((row, f"#{row.id}", literal(row.name), percent, state, _text_cell(row)))
        id_w = max(len(c[1]) for c in cells)
        name_w = min(NAME_MAX_WIDTH, max(c[2].cell_len for c in cells))
        pct_w = max(4, max(len(c[3]) for c in cells))
        state_w = max(c[4].cell_len for c in cells)
        fixed = id_w + name_w + pct_w + state_w + 5  # five one-column gaps
        room = options.max_width - fixed
        bar_w = max(MIN_BAR_WIDTH, min(BAR_WIDTH, room - 12))  # the text keeps 12 while the bar shrinks
        text_w = room - bar_w
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", no_wrap=True, width=id_w)
        table.add_column(no_wrap=True, width=name_w, overflow="ellipsis")
        table.add_column(no_wrap=True, width=bar_w)
        table.add_column(justify="right", no_wrap=True, width=pct_w)
        table.add_column(no_wrap=True, width=state_w)
        if text_w > 0:
            table.add_column(no_wrap=True, width=text_w, overflow="ellipsis")
        for row, ident, name, percent, state, text in cells:
            waiting = row.status != TaskStatus.RUNNING.value
            bar = ProgressBar(total=100, completed=0 if waiting else row.progress, width=bar_w)
            table.add_row(ident, name, bar, percent, state, *([text] if text_w > 0 else []))
        yield table
        hidden = self.more + len(self.rows) - len(shown)
        if hidden > 0:
            yield Text(f"… and {hidden} more", style="dim")
