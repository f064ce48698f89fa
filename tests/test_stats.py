"""``compute_stats`` on every database it runs on: run times and the timeline are computed
in SQL per dialect, so each dialect is checked against the same known rows.

SQLite always; PostgreSQL and MariaDB when RQJOBS_TEST_POSTGRES_URL /
RQJOBS_TEST_MYSQL_URL are set (each test makes its own database and drops it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url

#: read when the module is imported: the autouse fixture clears RQJOBS_* for each test
SERVER_URLS = {
    "postgresql": os.environ.get("RQJOBS_TEST_POSTGRES_URL"),
    "mysql": os.environ.get("RQJOBS_TEST_MYSQL_URL"),
}
BACKENDS = ["sqlite"] + [name for name, url in SERVER_URLS.items() if url]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from rqjobs.store.engine import forget_engines, get_engine
    from rqjobs.store.repository import TaskStore

    if request.param == "sqlite":
        yield TaskStore(get_engine(f"sqlite:///{tmp_path / 'stats.sqlite3'}"))
        forget_engines()
        return
    server = make_url(SERVER_URLS[request.param])
    name = f"rqjobs_stats_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield TaskStore(get_engine(server.set(database=name).render_as_string(hide_password=False)))
    finally:
        forget_engines()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()


def _row(store: Any, name: str, status: str, started: datetime | None, finished: datetime | None) -> int:
    from rqjobs.store.models import Task

    record = store.insert(name=name, description="d", queue="default", args=[], kwargs={}, timeout_s=30)
    with store.engine.begin() as conn:
        conn.execute(
            update(Task.__table__)
            .where(Task.__table__.c.id == record.id)
            .values(status=status, started_at=started, finished_at=finished)
        )
    return record.id


def test_stats_durations_rates_and_timeline(store: Any) -> None:
    from rqjobs.stats import compute_stats

    now = datetime.now(timezone.utc).replace(microsecond=0)
    base = now - timedelta(hours=2)
    # run times in whole seconds (MariaDB's DATETIME keeps no fraction), ending about every
    # 10 minutes from `base`
    run_times = [1, 2, 3, 4, 91]
    for i, seconds in enumerate(run_times):
        end = base + timedelta(minutes=10 * i, seconds=30 if i else 0)  # clear of the slice edges
        _row(store, "resize", "finished", end - timedelta(seconds=seconds), end)
    _row(store, "resize", "failed", now - timedelta(minutes=5, seconds=3), now - timedelta(minutes=5))
    _row(store, "resize", "running", now - timedelta(seconds=30), None)
    _row(store, "resize", "queued", None, None)
    _row(store, "mail", "canceled", None, now)

    stats = compute_stats(store, since=now - timedelta(days=1), buckets=12, now=now)
    by_name = {t.name: t for t in stats.tasks}
    resize = by_name["resize"]
    assert resize.counts["finished"] == 5 and resize.counts["failed"] == 1
    assert resize.counts["running"] == 1 and resize.counts["queued"] == 1 and resize.total == 8
    assert resize.failure_rate == pytest.approx(1 / 6)
    assert resize.p50_s == pytest.approx(3, abs=0.01)
    assert resize.p95_s == pytest.approx(91, abs=0.01)
    assert resize.max_s == pytest.approx(91, abs=0.01)
    mail = by_name["mail"]
    assert mail.counts["canceled"] == 1 and mail.failure_rate is None and mail.p50_s is None

    timeline = stats.timeline
    # the chart begins with the first run that ended (SQLite's julianday is exact to ~0.1 ms)
    assert abs((timeline.start - base).total_seconds()) < 0.01
    assert timeline.bucket_s == pytest.approx(600, abs=0.01)  # two hours in 12 slices
    assert sum(timeline.finished) == 5 and sum(timeline.failed) == 1
    assert timeline.failed[-1] == 1  # five minutes ago: the last slice
    assert [i for i, n in enumerate(timeline.finished) if n] == [0, 1, 2, 3, 4]

    only_mail = compute_stats(store, names=["mail"], now=now)
    assert [t.name for t in only_mail.tasks] == ["mail"]
    empty = compute_stats(store, since=now + timedelta(hours=1), now=now)
    assert empty.tasks == [] and sum(empty.timeline.finished) == 0


def test_percentile_is_nearest_rank() -> None:
    from rqjobs.stats import percentile

    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 1.0) == 100.0
