"""Follow task rows as they change: the engine of ``rqjobs tail``.

It reads the task database only (the row is the truth; Redis is not asked), by polling.
Each poll costs a few cheap indexed queries, whatever the size of the table:

* the rows that are running, and the oldest waiting ones (index on ``status, id``),
  both capped;
* rows created since the last poll (a primary-key range);
* rows that were active at the last poll and are no longer among the active ones,
  by primary key: they just finished, failed or were canceled.

Following given ids reads just those rows by primary key. The follower remembers the
last ``(status, attempts, progress, message)`` it saw per row and reports a
:class:`TaskChange` when that differs, so the caller renders only what changed. The
library never prints: rendering is the CLI's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from rqjobs.exceptions import TaskNotFound
from rqjobs.status import FINAL, WAITING, TaskStatus

if TYPE_CHECKING:
    from rqjobs.store.repository import TaskRecord, TaskStore

#: at most this many running rows, and as many waiting ones, are followed at once
ACTIVE_LIMIT = 200
#: rows created between two polls that one poll picks up (more wait for the next poll)
NEW_ROWS_LIMIT = 1000
DEFAULT_INTERVAL_S = 1.0


def _key(record: TaskRecord) -> tuple[str, int, int, str | None]:
    return (record.status, record.attempts, record.progress, record.progress_message)


@dataclass(frozen=True)
class TaskChange:
    """A row seen for the first time, or seen different from the last poll."""

    record: TaskRecord
    #: the row as the previous poll saw it; None the first time
    previous: TaskRecord | None
    #: when the poll that saw the change read the row (UTC)
    seen_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def at(self) -> datetime:
        """When the change happened, as the row records it, not when a poll noticed it.

        A final row: ``finished_at``; a run that starts: ``started_at``; a waiting row:
        ``enqueued_at`` (moved by every retry), else ``created_at``; a progress report:
        ``progress_at``. Only a row that has none of these (written before migration 0007)
        falls back to :attr:`seen_at`, within one poll interval of the change.
        """
        row, before = self.record, self.previous
        if row.status in FINAL:
            return row.finished_at or row.enqueued_at or row.created_at
        if row.status == TaskStatus.RUNNING.value:
            if before is None:  # first seen while running: did it report progress yet?
                progress_only = bool(row.progress or row.progress_message)
            else:
                progress_only = before.status == TaskStatus.RUNNING.value and before.attempts == row.attempts
            if progress_only:
                return row.progress_at or self.seen_at
            return row.started_at or self.seen_at
        return row.enqueued_at or row.created_at

    @property
    def ended(self) -> bool:
        """The row reached a final status with this change."""
        return self.record.status in FINAL and (self.previous is None or self.previous.status not in FINAL)


class TaskFollower:
    """Polls the task table and reports what changed since the last poll.

    With ``task_ids``, follows exactly those rows (``done`` once all are final; an unknown
    id raises :class:`TaskNotFound` at the first poll). Without, follows every task that
    is waiting or running (of ``names``, when given) and the ones created from now on.
    """

    def __init__(
        self,
        store: TaskStore,
        *,
        task_ids: Sequence[int] = (),
        names: Sequence[str] = (),
        active_limit: int = ACTIVE_LIMIT,
    ) -> None:
        self.store = store
        self.task_ids = list(dict.fromkeys(int(i) for i in task_ids))
        self.names = list(names)
        self.active_limit = active_limit
        self._seen: dict[int, TaskRecord] = {}
        self._max_id: int | None = None
        self.polls = 0

    # -- what the caller reads ---------------------------------------------------------

    @property
    def active(self) -> list[TaskRecord]:
        """Rows not yet final as of the last poll: running first, then by id."""
        rows = [r for r in self._seen.values() if r.status not in FINAL]
        return sorted(rows, key=lambda r: (r.status != TaskStatus.RUNNING.value, r.id))

    @property
    def records(self) -> list[TaskRecord]:
        """Every row seen, as of the last poll, by id."""
        return [self._seen[i] for i in sorted(self._seen)]

    @property
    def done(self) -> bool:
        """Following ids: all of them are final. Following everything: never."""
        return bool(self.task_ids) and self.polls > 0 and not self.active

    @property
    def all_finished(self) -> bool:
        """Every followed row finished (none failed or was canceled)."""
        return all(r.status == TaskStatus.FINISHED.value for r in self._seen.values())

    # -- polling -------------------------------------------------------------------------

    def poll(self) -> list[TaskChange]:
        """Read what changed since the last poll; the first poll reports the current state."""
        seen_at = datetime.now(timezone.utc)
        rows = self._read_ids() if self.task_ids else self._read_all()
        self.polls += 1
        changes = []
        for record in sorted(rows, key=lambda r: r.id):
            previous = self._seen.get(record.id)
            if previous is None or _key(previous) != _key(record):
                changes.append(TaskChange(record, previous, seen_at))
            self._seen[record.id] = record
        if not self.task_ids:
            # forget rows that ended before this poll: following everything must not grow forever
            for task_id in [i for i, r in self._seen.items() if r.status in FINAL]:
                if not any(c.record.id == task_id for c in changes):
                    del self._seen[task_id]
        return changes

    def _read_ids(self) -> list[TaskRecord]:
        wanted = [i for i in self.task_ids if i not in self._seen or self._seen[i].status not in FINAL]
        rows = self.store.get_many(wanted)
        if self.polls == 0:
            missing = sorted(set(wanted) - {r.id for r in rows})
            if missing:
                raise TaskNotFound(f"no task {', '.join(map(str, missing))}")
        return rows

    def _read_all(self) -> list[TaskRecord]:
        store, names = self.store, self.names
        first_poll = self._max_id is None
        if first_poll:
            # the high-water mark before the active rows: a row created in between is then
            # among the active rows (read after it), never below a mark read after it
            newest = store.find(limit=1)
            self._max_id = newest[0].id if newest else 0
        rows = store.find(statuses=(TaskStatus.RUNNING.value,), names=names, limit=self.active_limit)
        rows += store.find(statuses=WAITING, names=names, limit=self.active_limit, oldest_first=True)
        # waiting for their parents (--after): shown too, after the rows that can run now
        rows += store.find(
            statuses=(TaskStatus.DEFERRED.value,), names=names, limit=self.active_limit, oldest_first=True
        )
        if not first_poll:
            new = store.find(names=names, after_id=self._max_id, limit=NEW_ROWS_LIMIT, oldest_first=True)
            rows += new
            if new:
                self._max_id = new[-1].id
        by_id = {r.id: r for r in rows}
        # rows active at the last poll and not seen active now: they ended (or are past the cap)
        gone = [i for i, r in self._seen.items() if r.status not in FINAL and i not in by_id]
        for record in store.get_many(gone):
            by_id[record.id] = record
        return list(by_id.values())


def follow(
    follower: TaskFollower,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[list[TaskChange]]:
    """Poll every ``interval_s`` and yield each poll's changes (often an empty list).

    Ends when the follower is ``done`` (following ids, all final); otherwise it runs
    until the caller stops iterating (Ctrl-C in the CLI).
    """
    while True:
        changes = follower.poll()
        yield changes
        if follower.done:
            return
        sleep(interval_s)


__all__ = ["TaskChange", "TaskFollower", "follow"]
