"""The ``rqjobs workers`` table. A pure function of the live workers: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from rqjobs.cli.render.literal import literal
from rqjobs.cli.render.tables import age
from rqjobs.worker.listing import LiveWorker

STATE_STYLES = {"busy": "yellow", "idle": "green", "suspended": "magenta"}


def _task_cell(worker: LiveWorker) -> Text:
    if worker.current_job is None:
        return Text("-", style="dim")
    task_id = worker.current_task_id
    if task_id is None:  # a job enqueued without rqjobs: only RQ's id is known
        return literal(worker.current_job)
    text = Text(f"#{task_id}", style="bold")
    if worker.current_task_name:
        text.append(" ")
        text.append_text(literal(worker.current_task_name))
    return text


def _note_cell(worker: LiveWorker, paused: frozenset[str]) -> Text:
    """What the worker says about itself (``store failing``), and which of its queues are paused."""
    text = literal(worker.note, style="bold red") if worker.note else Text("")
    mine = [q for q in worker.queues if q in paused]
    if mine:
        if text:
            text.append("; ")
        text.append_text(literal("paused: " + ",".join(mine), style="magenta"))
    return text


#: the columns that give way on a narrow terminal, in this order, and how narrow they may get
_FLEXIBLE = (("NOTE", 12), ("QUEUES", 8), ("TASK", 14), ("WORKER", 14))
_COLUMNS = ("WORKER", "QUEUES", "STATE", "TASK", "SINCE", "BEAT", "NOTE")


def _cells(worker: LiveWorker, now: datetime, paused: frozenset[str]) -> list[Text]:
    state = worker.state or "?"
    return [
        literal(worker.label),
        literal(",".join(worker.queues) or "-"),
        Text(state, style=STATE_STYLES.get(state, "")),
        _task_cell(worker),
        Text(age(worker.started_at, now)),
        Text(age(worker.last_heartbeat, now)),
        _note_cell(worker, paused),
    ]


def _table(rows: Sequence[list[Text]], widths: dict[str, int]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in _COLUMNS:
        table.add_column(title, no_wrap=True, overflow="ellipsis", max_width=widths.get(title))
    for cells in rows:
        table.add_row(*cells)
    return table


class WorkersTable:
    """One line per live worker, fitting the console (80 columns included).

    STATE, SINCE and BEAT always show whole; the note, the queues, the task and the
    worker's name give way in that order, each cut with an ellipsis.
    """

    def __init__(
        self, workers: Sequence[LiveWorker], now: datetime | None = None, paused: frozenset[str] = frozenset()
    ) -> None:
        now = now or datetime.now(timezone.utc)
        self.rows = [_cells(w, now, paused) for w in workers]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        natural = {
            title: max([len(title)] + [row[i].cell_len for row in self.rows])
            for i, title in enumerate(_COLUMNS)
        }
        gaps = 2 * (len(_COLUMNS) - 1)  # a column is padded one space on each side
        excess = sum(natural.values()) + gaps - options.max_width
        widths = dict(natural)
        for floor in (None, 4):  # first down to each column's minimum, then further if need be
            for title, least in _FLEXIBLE:
                give = min(excess, max(0, widths[title] - (least if floor is None else floor)))
                if give > 0:
                    widths[title] -= give
                    excess -= give
        yield _table(self.rows, widths)


def workers_table(
    workers: Sequence[LiveWorker], now: datetime | None = None, paused: frozenset[str] = frozenset()
) -> WorkersTable:
    """``rqjobs workers``: the live workers, fitting the terminal; ``paused``: the paused queues."""
    return WorkersTable(workers, now, paused)
