"""Rich renderables for ``rqjobs stats``: the per-name table and the runs-over-time chart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from rqjobs.cli.render.literal import literal
from rqjobs.timeparse import format_duration

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
        # not ended yet: waiting (deferred too: it waits for its parents) or running
        active = c["queued"] + c["scheduled"] + c.get("deferred", 0) + c["running"]
        style = "red" if c["failed"] else None
        table.add_row(
            literal(task.name),
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
