"""The task search language of the web dashboard: qualifiers plus free text.

``task:send-mail status:failed,canceled since:1h "welcome mail"`` means: task name
send-mail, status failed or canceled, created in the last hour, and a description that
contains "welcome mail". ``schedule:nightly`` means the rows the ``[[schedule]]`` named
nightly made (its ticks and its runs by hand). Values of one qualifier are alternatives (comma-separated or
repeated); different qualifiers and free-text words must all hold.

Pure parsing, no SQL (that is :mod:`rqjobs.store.search`), so it is cheap to import and
easy to test; a bad query is an :class:`~rqjobs.exceptions.InvalidInput` saying what to
write instead.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime

from rqjobs.exceptions import InvalidInput
from rqjobs.status import ALL

#: ids are 32-bit integers in every supported database
MAX_ID = 2**31 - 1

QUALIFIERS = ("task", "status", "queue", "worker", "since", "id", "schedule")


@dataclass(frozen=True)
class TaskQuery:
    """A parsed search: every non-empty field must match."""

    ids: tuple[int, ...] = ()
    names: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    #: ``host`` (every worker process on it) or ``host:pid``
    workers: tuple[str, ...] = ()
    since: datetime | None = None
    #: names of ``[[schedule]]`` tables: the rows they made
    schedules: tuple[str, ...] = ()
    #: words (or quoted phrases) the description must contain, case-insensitively
    text: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not (
            self.ids
            or self.names
            or self.statuses
            or self.queues
            or self.workers
            or self.schedules
            or self.text
        ) and (self.since is None)


def _values(key: str, raw: str) -> list[str]:
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values:
        raise InvalidInput(f"{key}: needs a value, e.g. {_EXAMPLES[key]}")
    return values


_EXAMPLES = {
    "task": "task:send-mail",
    "status": "status:failed",
    "queue": "queue:default",
    "worker": "worker:myhost or worker:myhost:1234",
    "since": "since:1h or since:2026-12-01T09:00",
    "id": "id:42",
    "schedule": "schedule:nightly",
}


def parse_query(text: str, now: datetime | None = None) -> TaskQuery:
    """Parse a search box's text; raises InvalidInput for a query that cannot mean anything."""
    from rqjobs.timeparse import parse_since

    try:
        tokens = shlex.split(text or "")
    except ValueError:
        raise InvalidInput('unbalanced quotes in the search: close the "phrase"') from None
    found: dict[str, list[str]] = {}
    words: list[str] = []
    since: datetime | None = None
    for token in tokens:
        key, sep, raw = token.partition(":")
        key = key.lower()
        if not sep or key not in QUALIFIERS:
            words.append(token)  # "error:" in a description is searched as text
            continue
        if key == "since":
            if not raw.strip():
                raise InvalidInput(f"since: needs a value, e.g. {_EXAMPLES['since']}")
            since = parse_since(raw, now)
            continue
        found.setdefault(key, []).extend(_values(key, raw))

    statuses = [s.lower() for s in found.get("status", [])]
    unknown = [s for s in statuses if s not in ALL]
    if unknown:
        raise InvalidInput(f"status:{unknown[0]} is not a status (one of {', '.join(ALL)})")
    ids: list[int] = []
    for raw_id in found.get("id", []):
        if not raw_id.isdigit() or not 1 <= int(raw_id) <= MAX_ID:
            raise InvalidInput(f"id:{raw_id} is not a task id (a whole number from 1)")
        ids.append(int(raw_id))
    return TaskQuery(
        ids=tuple(dict.fromkeys(ids)),
        names=tuple(dict.fromkeys(found.get("task", []))),
        statuses=tuple(dict.fromkeys(statuses)),
        queues=tuple(dict.fromkeys(found.get("queue", []))),
        workers=tuple(dict.fromkeys(found.get("worker", []))),
        since=since,
        schedules=tuple(dict.fromkeys(found.get("schedule", []))),
        text=tuple(w for w in words if w.strip()),
    )


__all__ = ["QUALIFIERS", "TaskQuery", "parse_query"]
