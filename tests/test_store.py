"""TaskStore on every database rqjobs supports: SQLite, PostgreSQL and MariaDB alike.

Each test gets an empty database of its own (``db_url``, see tests/support/databases.py)
and the schema is made exactly as a user's first command makes it: through Alembic.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import inspect, text

from rqjobs.status import FINAL, RETRYABLE, WAITING, TaskStatus
from rqjobs.store import schema
from rqjobs.store.engine import create_store_engine, forget_engines, get_engine
from rqjobs.store.repository import TaskStore, attempt_log_entry

UNICODE = "héllo ✓ 日本語 🎉 Ωmega"


@pytest.fixture
def store(db_url: str) -> TaskStore:  # noqa: F811
    return TaskStore(get_engine(db_url), retry_s=5)


def new_task(store: TaskStore, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "name": "add",
        "description": "a test task",
        "queue": "default",
        "args": [1, 2],
        "kwargs": {},
        "timeout_s": 60,
    }
    values.update(overrides)
    return store.insert(**values)


def raw(store: TaskStore, sql: str, **params: Any) -> Any:
    with store.engine.begin() as conn:
        return conn.execute(text(sql), params)


# -- schema -------------------------------------------------------------------------------


def test_empty_database_gets_the_schema_through_alembic(db_url: str) -> None:  # noqa: F811
    probe = create_store_engine(db_url)
    try:
        assert schema.current_revision(probe) is None
    finally:
        probe.dispose()
    engine = get_engine(db_url)  # the first use creates the schema
    assert schema.current_revision(engine) == schema.SCHEMA_HEAD
    inspector = inspect(engine)
    assert {"tasks", "alembic_version"} <= set(inspector.get_table_names())
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("tasks")}
    assert indexes["ix_tasks_status_id"] == ["status", "id"]
    assert indexes["ix_tasks_name_created"] == ["name", "created_at"]
    assert indexes["ix_tasks_status_finished"] == ["status", "finished_at"]
    # a second engine (another process) finds it at head and leaves it alone
    forget_engines()
    assert schema.current_revision(get_engine(db_url)) == schema.SCHEMA_HEAD


# -- insert and transitions ---------------------------------------------------------------


def test_insert_returns_what_the_row_holds(store: TaskStore) -> None:
    record = new_task(store, kwargs={"b": 3}, max_retries=2, retry_intervals=[1, 5])
    row = store.get(record.id)
    assert row == record
    assert row.status == "queued" and row.attempts == 0 and row.progress == 0
    assert row.created_at.tzinfo is timezone.utc
    scheduled = new_task(store, scheduled_for=datetime.now(timezone.utc) + timedelta(hours=1))
    assert store.get(scheduled.id).status == "scheduled"
    assert store.get(10**9) is None


def test_success_path_and_late_writers_change_nothing(store: TaskStore) -> None:
    task = new_task(store)
    assert store.mark_running(task.id, "host:1")
    row = store.get(task.id)
    assert (row.status, row.attempts, row.progress, row.worker) == ("running", 1, 0, "host:1")
    assert row.started_at is not None and row.finished_at is None

    assert store.set_progress(task.id, 40, "reading")
    assert store.set_progress(task.id, 40, "reading")  # a no-op update still matched the row
    row = store.get(task.id)
    assert (row.progress, row.progress_message) == (40, "reading")

    assert store.mark_finished(task.id, {"result": 3})
    done = store.get(task.id)
    assert (done.status, done.result, done.progress) == ("finished", {"result": 3}, 100)
    assert done.finished_at is not None and done.finished_at >= done.started_at

    # duplicate and late writers: every one refused, the row exactly as it was
    assert not store.mark_finished(task.id, {"result": "other"})
    assert not store.mark_attempt_failed(task.id, "late failure\n")
    assert not store.mark_running(task.id, "host:2")
    assert not store.set_progress(task.id, 10, "late")
    assert not store.mark_canceled(task.id, (*WAITING, TaskStatus.RUNNING.value), "cancel\n")
    assert not store.mark_enqueue_failed(task.id, "enqueue failed\n")
    assert not store.mark_requeued(task.id, "retry\n", from_statuses=RETRYABLE)
    assert store.get(task.id) == done


def test_failed_attempts_retry_then_fail_with_every_log_entry(store: TaskStore) -> None:
    task = new_task(store, max_retries=2)
    assert store.mark_running(task.id, "host:1")
    assert store.mark_attempt_failed(
        task.id, attempt_log_entry(1, "failed", "Traceback: one"), will_retry=True
    )
    row = store.get(task.id)
    assert (row.status, row.finished_at, row.attempts) == ("queued", None, 1)

    assert store.mark_running(task.id, "host:1")
    retry_at = datetime.now(timezone.utc) + timedelta(seconds=30)
    entry = attempt_log_entry(2, "timed out after 5 s", "Traceback: two")
    assert store.mark_attempt_failed(task.id, entry, will_retry=True, retry_at=retry_at)
    row = store.get(task.id)
    assert row.status == "scheduled" and row.scheduled_for == retry_at

    assert store.mark_running(task.id, "host:2")  # scheduled -> running
    assert store.get(task.id).scheduled_for is None
    assert store.mark_attempt_failed(task.id, attempt_log_entry(3, "failed", "Traceback: three"))
    row = store.get(task.id)
    assert (row.status, row.attempts, row.progress) == ("failed", 3, 100)
    assert row.finished_at is not None
    assert (
        row.log.index("Traceback: one") < row.log.index("Traceback: two") < row.log.index("Traceback: three")
    )
    assert "--- attempt 2 timed out after 5 s" in row.log
    # a second report of the same failure changes nothing
    assert not store.mark_attempt_failed(task.id, "again\n")
    assert store.get(task.id).log == row.log


def test_cancel_requeue_and_enqueue_failure(store: TaskStore) -> None:
    task = new_task(store)
    assert store.mark_canceled(task.id, WAITING, "canceled by the operator\n")
    assert not store.mark_canceled(task.id, WAITING, "twice\n")
    row = store.get(task.id)
    assert row.status == "canceled" and row.finished_at is not None

    assert store.mark_requeued(task.id, "retried by the operator\n", from_statuses=RETRYABLE)
    assert not store.mark_requeued(task.id, "twice\n", from_statuses=RETRYABLE)
    row = store.get(task.id)
    assert (row.status, row.finished_at, row.result) == ("queued", None, None)
    assert row.log == "canceled by the operator\nretried by the operator\n"

    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert store.mark_running(task.id, "h:1") and store.mark_attempt_failed(task.id, "boom\n")
    assert store.mark_requeued(task.id, "again\n", scheduled_for=later, from_statuses=RETRYABLE)
    assert store.get(task.id).status == "scheduled"

    other = new_task(store)
    assert store.mark_enqueue_failed(other.id, "redis down\n")
    assert not store.mark_enqueue_failed(other.id, "redis down\n")
    assert store.get(other.id).status == "failed"


def test_running_row_is_taken_over_by_a_redelivery(store: TaskStore) -> None:
    # delivery is at-least-once: a job whose worker died runs again and must say so
    task = new_task(store)
    assert store.mark_running(task.id, "dead:1")
    assert store.mark_running(task.id, "alive:2")
    row = store.get(task.id)
    assert (row.status, row.attempts, row.worker) == ("running", 2, "alive:2")


def test_transitions_of_a_missing_row_report_false(store: TaskStore) -> None:
    assert not store.mark_running(424242, "h:1")
    assert not store.mark_finished(424242, {})
    assert not store.set_progress(424242, 5, None)


def test_racing_writers_exactly_one_wins(store: TaskStore) -> None:
    task = new_task(store)
    assert store.mark_running(task.id, "h:1")
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def finish(n: int) -> None:
        barrier.wait()
        results.append(store.mark_finished(task.id, {"winner": n}))

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    row = store.get(task.id)
    assert row.status == "finished" and set(row.result) == {"winner"}


# -- reads ----------------------------------------------------------------------------------


def test_list_filters_counts_since_and_limit(store: TaskStore) -> None:
    ids = {status: [] for status in ("queued", "running", "finished", "failed")}
    for n in range(3):
        ids["queued"].append(new_task(store, name="add").id)
        t = new_task(store, name="count-words")
        store.mark_running(t.id, "h:1")
        ids["running"].append(t.id)
        t = new_task(store, name="add")
        store.mark_running(t.id, "h:1")
        store.mark_finished(t.id, {"n": n})
        ids["finished"].append(t.id)
        t = new_task(store, name="send-mail")
        store.mark_running(t.id, "h:1")
        store.mark_attempt_failed(t.id, "boom\n")
        ids["failed"].append(t.id)
    old = new_task(store, name="add")
    raw(store, "UPDATE tasks SET created_at = :when WHERE id = :id", when=datetime(2020, 1, 1), id=old.id)

    everything = store.find(limit=None)
    assert [r.id for r in everything] == sorted((r.id for r in everything), reverse=True)
    assert len(everything) == 13
    assert [r.id for r in store.find(limit=3)] == [r.id for r in everything[:3]]
    assert [r.id for r in store.find(limit=3, oldest_first=True)] == sorted(r.id for r in everything)[:3]

    assert {r.id for r in store.find(statuses=["failed"], limit=None)} == set(ids["failed"])
    both = store.find(statuses=["failed", "running"], limit=None)
    assert {r.id for r in both} == set(ids["failed"] + ids["running"])
    assert {r.id for r in store.find(names=["add"], statuses=["finished"], limit=None)} == set(
        ids["finished"]
    )
    assert store.find(names=["Add"], limit=None) == []  # names compare exactly on every database

    since = datetime.now(timezone.utc) - timedelta(hours=1)
    recent = store.find(names=["add"], since=since, limit=None)
    assert old.id not in {r.id for r in recent} and len(recent) == 6
    assert {r.id for r in store.find(after_id=everything[2].id, limit=None)} == {
        everything[0].id,
        everything[1].id,
    }

    counts = store.counts_by_status()
    assert counts == {
        "queued": 4,
        "scheduled": 0,
        "deferred": 0,
        "running": 3,
        "finished": 3,
        "failed": 3,
        "canceled": 0,
    }
    assert store.counts_by_status(names=["add"], since=since) == {
        "queued": 3,
        "scheduled": 0,
        "deferred": 0,
        "running": 0,
        "finished": 3,
        "failed": 0,
        "canceled": 0,
    }
    assert store.ids_with_status(["running"]) == sorted(ids["running"])
    assert store.ids_with_status(["queued"], names=["add"]) == sorted([*ids["queued"], old.id])
    assert [r.id for r in store.get_many([ids["failed"][0], ids["queued"][1], 999999])] == sorted(
        [ids["failed"][0], ids["queued"][1]]
    )
    assert store.get_many([]) == []


# -- column types ---------------------------------------------------------------------------


def test_json_and_text_round_trip(store: TaskStore) -> None:
    nested = {"π": 3.14159, "list": [1, "two", None, True, {"deep": [[], {}]}], UNICODE: UNICODE}
    big_log = "line of a long traceback ✓\n" * 4000  # ~100 KiB: more than MariaDB's TEXT holds
    task = new_task(
        store,
        description=f"description {UNICODE}",
        args=[UNICODE, nested, 2**40, -1.5],
        kwargs={"text": UNICODE, "nested": nested},
    )
    assert store.mark_running(task.id, "h:1")
    assert store.mark_attempt_failed(task.id, big_log, will_retry=True)
    assert store.mark_running(task.id, "h:1")
    assert store.set_progress(task.id, 50, f"reading {UNICODE}")
    result = {"total": 3, "top": [[UNICODE, 2]], "big": "x" * 200_000}
    assert store.mark_finished(task.id, result)
    row = store.get(task.id)
    assert row.description == f"description {UNICODE}"
    assert row.args == [UNICODE, nested, 2**40, -1.5]
    assert row.kwargs == {"text": UNICODE, "nested": nested}
    assert row.result == result
    assert row.log == big_log
    assert row.progress_message == f"reading {UNICODE}"
    assert store.find(names=["add"], limit=1)[0].description == f"description {UNICODE}"


def test_datetimes_round_trip_as_aware_utc(store: TaskStore) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    when = datetime(2031, 3, 4, 5, 6, 7, 891011, tzinfo=ist)
    task = new_task(store, scheduled_for=when)
    row = store.get(task.id)
    assert row.scheduled_for == when  # the same instant...
    assert row.scheduled_for.tzinfo is timezone.utc  # ...handed back in UTC
    assert row.scheduled_for.hour == 23 and row.scheduled_for.day == 3
    assert row.scheduled_for.microsecond == 891011  # MariaDB too (DATETIME(6))
    assert store.mark_running(task.id, "h:1") and store.mark_finished(task.id, {})
    row = store.get(task.id)
    for value in (row.created_at, row.enqueued_at, row.started_at, row.finished_at):
        assert value.tzinfo is timezone.utc
        assert abs(value - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert row.started_at <= row.finished_at
    # a naive datetime is taken as UTC, never as the server's local time
    naive = new_task(store, scheduled_for=datetime(2031, 1, 1, 12, 0, 0))
    assert store.get(naive.id).scheduled_for == datetime(2031, 1, 1, 12, tzinfo=timezone.utc)


def test_ids_are_never_reused(store: TaskStore, db_url: str) -> None:  # noqa: F811
    first = [new_task(store).id for _ in range(3)]
    assert first == sorted(first) and len(set(first)) == 3
    raw(store, "DELETE FROM tasks WHERE id = :id", id=first[-1])  # the newest row
    assert new_task(store).id > first[-1]
    raw(store, "DELETE FROM tasks")
    forget_engines()  # a new process, a new engine
    again = TaskStore(get_engine(db_url))
    assert new_task(again).id > first[-1] + 1


def test_prune_deletes_old_final_rows_in_batches(store: TaskStore) -> None:
    old_final: list[int] = []
    for n in range(25):
        task = new_task(store)
        status = FINAL[n % 3]
        if status == "finished":
            store.mark_running(task.id, "h:1")
            store.mark_finished(task.id, {})
        elif status == "failed":
            store.mark_enqueue_failed(task.id, "x\n")
        else:
            store.mark_canceled(task.id, WAITING, "x\n")
        old_final.append(task.id)
    old_waiting = [new_task(store).id for _ in range(2)]
    old_running = new_task(store).id
    store.mark_running(old_running, "h:1")
    long_ago = datetime(2020, 1, 1)
    raw(store, "UPDATE tasks SET created_at = :when", when=long_ago)
    recent_final = new_task(store).id
    store.mark_enqueue_failed(recent_final, "x\n")

    cutoff = datetime.now(timezone.utc) - timedelta(days=1)
    assert store.delete_older_than(cutoff, dry_run=True) == 25
    assert store.delete_older_than(cutoff, statuses=["failed"], dry_run=True) == 8
    assert store.delete_older_than(cutoff, batch=10) == 25
    left = {r.id for r in store.find(limit=None)}
    assert left == {*old_waiting, old_running, recent_final}
    assert store.delete_older_than(cutoff, batch=10) == 0


# -- MySQL/MariaDB rowcount semantics -------------------------------------------------------


def test_an_update_that_changes_no_value_still_counts_as_done(store: TaskStore) -> None:
    """MySQL reports *changed* rows unless the client asks for FOUND_ROWS; SQLAlchemy's
    MySQL dialects do, so a transition that rewrites equal values is not taken for a
    refused one (the store's True/False means "matched", on every database)."""
    task = new_task(store)
    store.mark_running(task.id, "h:1")
    with store.engine.begin() as conn:
        result = conn.execute(text("UPDATE tasks SET progress = progress WHERE id = :id"), {"id": task.id})
        assert result.rowcount == 1
    assert store.set_progress(task.id, 0, None)  # equal to what the row holds


# -- paused queues (issue 14) ---------------------------------------------------------------


def test_paused_queues_survive_in_sql_and_report_what_changed(store: TaskStore) -> None:
    from rqjobs.store.queues import QueueStore

    queues = QueueStore(store.engine)
    assert queues.paused() == []
    assert queues.pause(["mail", "default", "mail"], by="me:1") == ["mail", "default"]
    assert queues.pause(["mail", "images"], by="me:2") == ["images"]
    paused = queues.paused()
    assert [(p.queue, p.paused_by) for p in paused] == [
        ("default", "me:1"),
        ("images", "me:2"),
        ("mail", "me:1"),
    ]
    assert all(p.paused_at.tzinfo is not None for p in paused)
    # a second store on the same database (another process) sees the same state
    assert [p.queue for p in QueueStore(store.engine).paused()] == ["default", "images", "mail"]
    assert queues.resume(["mail", "nope"]) == ["mail"]
    assert queues.resume(None) == ["default", "images"]
    assert queues.paused() == []
