"""Rich renderables for ``status``, ``show``, ``tasks`` and the outcomes of ``retry``/``cancel``.

Pure functions of rows: no I/O, no printing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rqjobs.cli.render.literal import literal, visible
from rqjobs.status import TaskStatus
from rqjobs.store.repository import TaskRecord
from rqjobs.timeparse import format_duration

STATUS_STYLES = {
    TaskStatus.QUEUED.value: "cyan",
    TaskStatus.SCHEDULED.value: "blue",
    TaskStatus.DEFERRED.value: "dim cyan",
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


def _build_status_table(
    rows: Sequence[TaskRecord], desc_width: int | None, error_width: int | None = None
) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, expand=False)
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("TASK", no_wrap=True, max_width=16, overflow="ellipsis")
    table.add_column("DESCRIPTION", no_wrap=True, overflow="ellipsis", max_width=desc_width)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("TRY", justify="right", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("TOOK", justify="right", no_wrap=True)
    # why they failed, when failed rows are shown: the last line of the last failure
    show_error = any(row.status == TaskStatus.FAILED.value for row in rows)
    if show_error:
        table.add_column("ERROR", no_wrap=True, overflow="ellipsis", max_width=error_width)
    now = datetime.now(timezone.utc)
    for row in rows:
        style = "red" if row.status == TaskStatus.FAILED.value else None
        cells: list[str | Text] = [
            str(row.id),
            literal(row.name),
            literal(row.description),
            _status_cell(row),
            str(row.attempts),
            age(row.created_at, now),
            format_duration(row.duration_s),
        ]
        if show_error:
            cells.append(literal(row.error or ""))
        table.add_row(*cells, style=style)
    return table


class StatusTable:
    """The ``rqjobs status`` table, newest first; failed rows stand out.

    It fits the console's width (80 columns included): only the description column
    gives way, eliding its end, so ids, statuses and times are always shown whole.
    """

    def __init__(
        self, rows: Sequence[TaskRecord], counts: Mapping[str, int], statuses: Sequence[str] = ()
    ) -> None:
        self.rows = rows
        self.counts = counts
        self.statuses = list(statuses)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        def width_of(table: Table) -> int:
            return Measurement.get(console, options.update_width(10_000), table).maximum

        table = _build_status_table(self.rows, None)
        needed = width_of(table)
        if needed > options.max_width:
            # the error gives way first (down to 24 columns), then the description (to 8),
            # then the error again (to 12): the other columns are never cut
            natural_error = max((cell_len(visible(r.error or "")) for r in self.rows), default=0)
            error_width = max(24, natural_error - (needed - options.max_width)) if natural_error else None
            table = _build_status_table(self.rows, None, error_width)
            needed = width_of(table)
            if needed > options.max_width:
                natural = max((cell_len(visible(r.description)) for r in self.rows), default=11)
                width = max(8, natural - (needed - options.max_width))
                table = _build_status_table(self.rows, width, error_width)
                needed = width_of(table)
                if needed > options.max_width and error_width is not None:
                    error_width = max(12, error_width - (needed - options.max_width))
                    table = _build_status_table(self.rows, width, error_width)
        yield table
        yield Text(self.footer())

    def footer(self) -> str:
        """Says what it counts: the rows shown, of how many that match, and every status.

        Not a caption: a caption wraps at the table's width, this at the console's.
        """
        matching = sum(self.counts.get(s, 0) for s in self.statuses or self.counts)
        which = "/".join(self.statuses) + " " if self.statuses else ""
        by_status = ", ".join(f"{n} {status}" for status, n in self.counts.items() if n) or "none"
        return f"{len(self.rows)} of {matching} {which}tasks shown, newest first\nall statuses: {by_status}"


def status_table(
    rows: Sequence[TaskRecord], counts: Mapping[str, int], statuses: Sequence[str] = ()
) -> StatusTable:
    """Newest first; fits the terminal (descriptions elide); failed rows stand out."""
    return StatusTable(rows, counts, statuses)


def _when(value: datetime | None) -> str:
    return value.astimezone().isoformat(timespec="seconds") if value else "-"


def _short_when(value: datetime | None) -> str:
    """Local time to the second, without the offset (narrow columns)."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _gap(start: datetime | None, end: datetime | None, what: str) -> str:
    if start is None or end is None or end < start:
        return ""
    return f"  ({what} {format_duration((end - start).total_seconds())})"


def _shows_progress(row: TaskRecord) -> bool:
    """Progress means something only for a row that is running or ran to the end.

    A failed or canceled row's progress is whatever its last attempt reported (often the
    100% a finished retry left behind, or 0): printed, it would claim work that was not done.
    """
    return row.status in (TaskStatus.RUNNING.value, TaskStatus.FINISHED.value)


def _linked(tasks: Sequence[tuple[int, str | None]]) -> str:
    """``#3 finished, #4 running``: tasks with their statuses (None: deleted)."""
    return ", ".join(f"#{task_id} {status or 'deleted'}" for task_id, status in tasks)


def _detail_fields(
    row: TaskRecord,
    parents: Sequence[tuple[int, str | None]] = (),
    dependents: Sequence[tuple[int, str | None]] = (),
) -> list[tuple[str, str]]:
    """``(label, value)`` for every field ``show`` prints, values as plain one-line text."""
    fields: list[tuple[str, str]] = [
        ("id", str(row.id)),
        ("task", visible(row.name)),
        ("description", visible(row.description)),
        ("status", row.status),
    ]
    if _shows_progress(row):
        message = f"  {row.progress_message}" if row.progress_message else ""
        fields.append(("progress", visible(f"{row.progress}%{message}")))
    fields.append(("queue", visible(row.queue)))
    if parents:
        fields.append(("after", _linked(parents)))
    if dependents:
        fields.append(("dependents", _linked(dependents)))
    if row.schedule:
        tick = f"tick {_when(row.schedule_tick)}" if row.schedule_tick else "run by hand, outside the ticks"
        fields.append(("schedule", visible(f"{row.schedule} ({tick})")))
    fields.append(("args", visible(json.dumps(row.args, ensure_ascii=False))))
    fields.append(("kwargs", visible(json.dumps(row.kwargs, ensure_ascii=False))))
    retry = f"{row.max_retries} retries" + (
        f", intervals {row.retry_intervals} s" if row.retry_intervals else ""
    )
    fields.append(("attempts", f"{row.attempts} ({retry})"))
    fields.append(("timeout", f"{row.timeout_s} s"))
    fields.append(("created", _when(row.created_at)))
    fields.append(("enqueued", _when(row.enqueued_at)))
    if row.scheduled_for:
        fields.append(("scheduled for", _when(row.scheduled_for)))
    fields.append(("started", _when(row.started_at) + _gap(row.enqueued_at, row.started_at, "waited")))
    fields.append(("finished", _when(row.finished_at)))
    fields.append(("duration", format_duration(row.duration_s)))
    fields.append(("worker", visible(row.worker or "-")))
    return fields


def task_detail(
    row: TaskRecord,
    parents: Sequence[tuple[int, str | None]] = (),
    dependents: Sequence[tuple[int, str | None]] = (),
) -> Group:
    """Every field of the row, its parents and dependents, the result as pretty JSON and the
    log as text (a terminal)."""
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold", no_wrap=True)
    info.add_column()
    for label, value in _detail_fields(row, parents, dependents):
        # values went through visible() already: Text() never parses them as markup
        info.add_row(label, status_text(value) if label == "status" else Text(value))
    parts: list[Any] = [info]
    if row.result is not None:
        from rich.syntax import Syntax  # pygments: ~70 ms of imports that only `show` needs

        parts.append(
            Panel(
                Syntax(
                    visible(json.dumps(row.result, indent=2, ensure_ascii=False), multiline=True),
                    "json",
                    word_wrap=True,
                ),
                title="result",
            )
        )
    if row.log:
        parts.append(Panel(literal(row.log.rstrip(), multiline=True), title="log", border_style="red"))
    return Group(*parts)


def task_detail_text(
    row: TaskRecord,
    parents: Sequence[tuple[int, str | None]] = (),
    dependents: Sequence[tuple[int, str | None]] = (),
) -> str:
    """``show`` for a pipe or a file: the same fields as plain lines, no boxes, no wrapping.

    Tracebacks come out whole, one source line per line, so they can be grepped and
    pasted; no line ends in spaces (a padded table cell or a panel border would).
    """
    fields = _detail_fields(row, parents, dependents)
    width = max(len(label) for label, _ in fields)
    lines = [f"{label.ljust(width)}  {value}" for label, value in fields]
    if row.result is not None:
        lines += [
            "",
            "result:",
            visible(json.dumps(row.result, indent=2, ensure_ascii=False), multiline=True),
        ]
    if row.log:
        lines += ["", "log:", visible(row.log.rstrip(), multiline=True)]
    text = "\n".join(lines)
    return "\n".join(line.rstrip() for line in text.split("\n")) + "\n"


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
            if p.get("help"):
                text += f"\n    {p['help']}"
            params.append(text)
        table.add_row(task["name"], "\n".join(params) or "-", task["summary"])
    return table


# -- retry / cancel -----------------------------------------------------------------------


def outcome_line(task_id: int, ok: bool, action: str, detail: str) -> Text:
    text = Text(f"#{task_id} ", style="bold")
    text.append(action, style="green" if ok else "bold red")
    if detail:
        text.append(f": {visible(detail)}")
    return text


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
            literal(view.spec.name),
            literal(view.spec.task),
            literal(view.spec.spec_text),
            literal(view.spec.timezone),
            _short_when(view.next_tick),
            _short_when(view.last_tick),
            last_row,
            Text(view.state, style="yellow" if view.state != "active" else ""),
        )
    return table
