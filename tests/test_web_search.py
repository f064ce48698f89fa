"""The dashboard's search and counts in SQL, on SQLite, PostgreSQL and MariaDB alike."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from rqjobs.exceptions import InvalidInput
from rqjobs.search import parse_query
from tests.support.databases import db_url  # noqa: F401 - the fixture

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(db_url: str) -> Any:  # noqa: F811 - the fixture
    from rqjobs.store.engine import get_engine
    from rqjobs.store.repository import TaskStore

    return TaskStore(get_engine(db_url))


def _row(store: Any, name: str = "add", description: str = "d", **values: Any) -> int:
    from rqjobs.store.models import Task

    record = store.insert(
        name=name,
        description=description,
        queue=values.pop("queue", "default"),
        args=[],
        kwargs={},
        timeout_s=30,
    )
    if values:
        with store.engine.begin() as conn:
            conn.execute(update(Task.__table__).where(Task.__table__.c.id == record.id).values(**values))
    return record.id


def _ids(page: Any) -> list[int]:
    return [r.id for r in page.rows]


def test_parse_query() -> None:
    q = parse_query(
        'task:send-mail,add status:FAILED queue:high worker:h:1 id:7 "big invoice" acme since:2h', now=NOW
    )
    assert q.names == ("send-mail", "add") and q.statuses == ("failed",) and q.queues == ("high",)
    assert q.workers == ("h:1",) and q.ids == (7,) and q.text == ("big invoice", "acme")
    assert q.since == NOW - timedelta(hours=2)
    assert parse_query("").empty and not parse_query("x").empty
    assert parse_query("error: disk").text == ("error:", "disk")  # not a qualifier: text
    assert parse_query("schedule:nightly,hourly schedule:nightly").schedules == ("nightly", "hourly")
    assert not parse_query("schedule:nightly").empty
    for bad in ("status:nope", "id:0", "id:-1", "since:", "queue:", '"open', "schedule:", "id:99999999999"):
        with pytest.raises(InvalidInput):
            parse_query(bad)


def test_qualifiers_text_and_worker_prefix(store: Any) -> None:

    a = _row(store, "add", "Invoice for ACME", status="finished", worker="alpha:10")
    b = _row(store, "send-mail", "welcome 100%_off", queue="high", status="failed", worker="alpha:11")
    c = _row(store, "add", "another invoice", status="running", worker="alphabet:1")

    def ids(text: str) -> list[int]:
        return _ids(store.search(parse_query(text)))

    assert ids("") == [c, b, a]
    assert ids("task:add") == [c, a]
    assert ids("status:failed,running") == [c, b]
    assert ids("queue:high") == [b]
    assert ids(f"id:{a},{c}") == [c, a]
    assert ids("invoice") == [c, a] and ids("INVOICE acme") == [a]  # case-insensitive everywhere
    assert ids("100%_off") == [b] and ids("100%") == [b] and ids("_") == [b]  # LIKE wildcards are literal
    assert ids("worker:alpha") == [b, a]  # a host: its processes, not "alphabet"
    assert ids("worker:alpha:11") == [b]
    assert ids("since:1h task:add") == [c, a]


def test_schedule_qualifier_walks_the_schedule_index(store: Any) -> None:
    """``schedule:NAME``: the rows that schedule made (ticks and runs by hand), in id order,
    read through ``ix_tasks_schedule_id`` rather than a scan of the table."""
    from sqlalchemy import text

    tick = NOW - timedelta(hours=5)
    nightly = [
        _row(store, "report", f"nightly {i}", schedule="nightly", schedule_tick=tick + timedelta(hours=i))
        for i in range(3)
    ]
    by_hand = _row(store, "report", "nightly by hand", schedule="nightly", status="failed")
    hourly = _row(store, "report", "hourly 0", schedule="hourly", schedule_tick=tick)
    plain = _row(store, "report", "not scheduled")

    def ids(text_: str, **kwargs: Any) -> list[int]:
        return _ids(store.search(parse_query(text_), **kwargs))

    assert ids("schedule:nightly") == [by_hand, *nightly[::-1]]
    assert ids("schedule:nightly", before_id=by_hand) == nightly[::-1]
    assert ids("schedule:nightly status:failed") == [by_hand]
    assert ids("schedule:hourly,nightly task:report") == [hourly, by_hand, *nightly[::-1]]
    assert ids("schedule:nobody") == [] and plain in ids("")
    page = store.search(parse_query("schedule:nightly"), limit=2)
    assert _ids(page) == [by_hand, nightly[2]] and page.older_than == nightly[2]
    assert page.scanned_down_to is None  # indexed: never windowed
    assert store.matching_ids(parse_query("schedule:nightly"), statuses=("failed",), limit=5) == (
        [by_hand],
        False,
    )
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            plan = " ".join(
                str(r[-1])
                for r in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT * FROM tasks WHERE schedule IN ('nightly') "
                        "ORDER BY id DESC LIMIT 51"
                    )
                )
            )
        assert "ix_tasks_schedule_id" in plan, plan


def test_keyset_pages_and_windows(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from rqjobs.store import search

    ids = [_row(store, "add", "needle" if i in (3, 30) else "hay") for i in range(40)]
    query = parse_query("")
    first = store.search(query, limit=15)
    assert _ids(first) == ids[::-1][:15] and first.newer_than is None and first.older_than == ids[25]
    second = store.search(query, limit=15, before_id=first.older_than)
    assert _ids(second) == ids[::-1][15:30] and second.newer_than == ids[24]
    back = store.search(query, limit=15, after_id=second.newer_than)
    assert _ids(back) == _ids(first)
    last = store.search(query, limit=15, before_id=second.older_than)
    assert _ids(last) == ids[::-1][30:] and last.older_than is None
    # free text looks at SCAN_WINDOW ids per request and says where it stopped
    monkeypatch.setattr(search, "SCAN_WINDOW", 10)
    needle = parse_query("needle")
    top = store.search(needle)  # ids 31-40: one match, and older rows not looked at
    assert _ids(top) == [ids[30]] and top.scanned_down_to == ids[30] and top.older_than is None
    found: list[int] = _ids(top)
    before = top.scanned_down_to
    pages = 1
    while before is not None:
        page = store.search(needle, before_id=before)
        found += _ids(page)
        before = page.scanned_down_to or page.older_than
        pages += 1
    assert pages == 4  # 40 ids, 10 per request
    assert found == [ids[30], ids[3]]
    # a qualifier with an index is not windowed
    assert _ids(store.search(parse_query("task:add needle"))) == [ids[30], ids[3]]


def test_many_values_of_a_qualifier_are_walked_one_index_at_a_time(store: Any) -> None:
    """``task:a,b`` runs one index walk per name and merges them by id: the same pages, both ways."""
    from rqjobs.store.search import _split

    names = ["add", "send-mail", "report"]
    rows = [
        (_row(store, names[i % 3], f"r{i}", status="failed" if i % 4 else "finished"), i) for i in range(30)
    ]
    wanted = [task_id for task_id, i in rows[::-1] if i % 3 in (0, 1)]
    query = parse_query("task:add,send-mail")
    assert len(_split(query)) == 2 and len(_split(parse_query("task:add,send-mail status:failed"))) == 1
    seen: list[int] = []
    page = store.search(query, limit=4)
    pages = [page]
    while True:
        seen += _ids(page)
        if page.older_than is None:
            break
        page = store.search(query, limit=4, before_id=page.older_than)
        pages.append(page)
    assert seen == wanted and len(pages) == 5
    back = store.search(query, limit=4, after_id=pages[2].newer_than)
    assert _ids(back) == _ids(pages[1]) and back.newer_than == _ids(pages[1])[0]
    failed = [task_id for task_id, i in rows[::-1] if i % 3 in (0, 1) and i % 4]
    assert _ids(store.search(parse_query("task:add,send-mail status:failed,canceled"), limit=50)) == failed
    assert _ids(store.search(parse_query("task:nope,other"))) == []


def test_since_window_with_no_rows_is_empty(store: Any) -> None:
    # since: is relative to the real clock, so the rows' age must be too (a fixed NOW made
    # this test fail from 2026-12-02 12:00 UTC on)
    old = datetime.now(timezone.utc) - timedelta(days=3)
    for _ in range(5):
        _row(store, created_at=old)
    assert _ids(store.search(parse_query("since:1h"))) == []
    assert len(store.search(parse_query("since:4d")).rows) == 5


def test_matching_ids_progress_and_counts(store: Any) -> None:

    f1 = _row(store, status="failed", finished_at=NOW - timedelta(hours=1))
    f2 = _row(store, status="failed", queue="high", finished_at=NOW - timedelta(hours=1))
    _row(store, status="finished", progress=100, finished_at=NOW - timedelta(minutes=5))
    _row(store, status="finished", progress=100, finished_at=NOW - timedelta(days=2))  # ended before
    q = _row(store, status="queued")
    _row(store, status="running", queue="high")
    _row(store, status="deferred", queue="high")
    assert store.matching_ids(parse_query("task:add"), statuses=("failed",), limit=10) == ([f2, f1], False)
    assert store.matching_ids(parse_query("task:add"), statuses=("failed",), limit=1) == ([f2], True)
    assert store.matching_ids(
        parse_query("status:failed,queued"), statuses=("failed", "canceled"), limit=5
    ) == (
        [f2, f1],
        False,
    )
    assert store.matching_ids(parse_query("status:finished"), statuses=("failed",), limit=5) == ([], False)
    both = store.matching_ids(parse_query("queue:default,high"), statuses=("failed", "queued"), limit=2)
    assert both == ([q, f2], True)
    progress = store.progress_of([q, 999])
    assert progress == [{"id": q, "status": "queued", "progress": 0, "progress_message": None, "attempts": 0}]
    assert store.counts_by_queue_and_status(ended_since=NOW - timedelta(days=1)) == {
        "default": {"failed": 1, "finished": 1, "queued": 1},
        "high": {"failed": 1, "running": 1, "deferred": 1},
    }


def test_runs_ended_per_time_slice(store: Any) -> None:

    for hours_ago, status in (
        (0.5, "finished"),
        (0.6, "finished"),
        (1.5, "failed"),
        (23.5, "finished"),
        (30, "failed"),
    ):
        _row(store, status=status, finished_at=NOW - timedelta(hours=hours_ago))
    _row(store, status="running")
    day = store.ended_per_bucket(span=timedelta(hours=24), buckets=24, now=NOW)
    assert day.finished[23] == 2 and day.failed[22] == 1 and day.finished[0] == 1
    assert day.total_finished == 3 and day.total_failed == 1 and day.failure_rate == 0.25
    week = store.ended_per_bucket(span=timedelta(days=7), buckets=28, now=NOW)
    assert week.total_finished == 3 and week.total_failed == 2
