"""The task lifecycle end to end: real worker subprocesses, a real Redis, SQLite rows."""

from __future__ import annotations

from tests.conftest import Project


def test_success_stores_result_and_progress(project: Project) -> None:
    task_id = project.enqueue("progress-steps", "--steps", "3", "--pause-s", "0.6", description="steps")
    row = project.row(task_id)
    assert row.status == "queued" and row.attempts == 0
    project.work()
    row = project.row(task_id)
    assert row.status == "finished"
    assert row.result == {"steps": 3}
    assert row.progress == 100
    assert row.progress_message == "step 3 of 3"  # the last message reported is kept
    assert row.attempts == 1
    assert row.started_at and row.finished_at and row.finished_at >= row.started_at
    assert row.worker and ":" in row.worker
    assert row.log is None


def test_non_dict_result_is_wrapped(project: Project) -> None:
    task_id = project.enqueue("add", "--a", "2", "--b", "40")
    project.work()
    assert project.row(task_id).result == {"result": 42}


def test_failure_records_traceback(project: Project) -> None:
    task_id = project.enqueue("fail-always", "--message", "disk on fire")
    project.work()
    row = project.row(task_id)
    assert row.status == "failed"
    assert row.attempts == 1
    assert "Traceback (most recent call last)" in row.log
    assert "RuntimeError: disk on fire" in row.log
    assert "--- attempt 1 failed" in row.log
    assert row.finished_at is not None


def test_retry_without_interval_then_success(project: Project) -> None:
    marker = project.root / "flaky.count"
    task_id = project.enqueue("flaky", "--marker", str(marker), "--failures", "1", "--retries", "2")
    project.work()
    row = project.row(task_id)
    assert row.status == "finished", row.log
    assert row.attempts == 2
    assert row.result == {"result": "succeeded after 1 failures"}
    assert row.log.count("--- attempt") == 1 and "flaky failure 1 of 1" in row.log


def test_retries_exhausted_keep_every_traceback(project: Project) -> None:
    task_id = project.enqueue("fail-always", "--retries", "2")
    project.work()
    row = project.row(task_id)
    assert row.status == "failed"
    assert row.attempts == 3
    for attempt in (1, 2, 3):
        assert f"--- attempt {attempt} failed" in row.log
    assert row.log.count("RuntimeError: boom") == 3


def test_unserialisable_result_fails_the_row(project: Project) -> None:
    task_id = project.enqueue("unserialisable")
    project.work()
    row = project.row(task_id)
    assert row.status == "failed"
    assert "not JSON-serialisable" in row.log
    assert row.result is None


def test_killed_horse_fails_the_row_and_worker_goes_on(project: Project) -> None:
    killed = project.enqueue("kill-self")
    after = project.enqueue("add", "--a", "1", "--b", "1")
    project.work()
    row = project.row(killed)
    assert row.status == "failed"
    assert "SIGKILL" in row.log
    assert project.row(after).status == "finished"


def test_unregistered_task_is_refused_by_the_worker(project: Project) -> None:
    """A job naming a function that is not a registered task never runs; the row says why."""
    from rq.serializers import JSONSerializer

    runtime = project.runtime()
    record = runtime.store.insert(
        name="add", description="smuggled", queue="default", args=[], kwargs={}, timeout_s=30
    )
    marker = project.root / "should-not-exist"
    queue = runtime.queue("default")
    job = queue.create_job("pathlib.Path.touch", args=[str(marker)], job_id=record.job_id)
    queue.enqueue_job(job)
    assert queue.serializer is JSONSerializer
    project.work()
    row = project.row(record.id)
    assert row.status == "failed"
    assert "not a registered task" in row.log
    assert "pathlib.Path.touch" in row.log
    assert not marker.exists()


def test_sigterm_finishes_the_current_job_then_exits(project: Project) -> None:
    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "2", "--marker", str(marker))
    assert project.signal_worker_while_running(marker, [0]) == 0
    row = project.row(task_id)
    assert row.status == "finished", row.log


def test_second_sigterm_stops_now_and_the_row_says_so(project: Project) -> None:
    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "30", "--marker", str(marker))
    # RQ ignores a repeat within 1 s (its pool sends duplicates)
    project.signal_worker_while_running(marker, [0, 1.5])
    row = project.row(task_id)
    assert row.status == "failed"
    assert "cold shutdown" in row.log
