"""Edges where a row could lie: odd exits, repeated signals, refused jobs with retries,
option defaults against --kwargs, and progress reported in a tight loop."""

from __future__ import annotations

import pytest

from tests.conftest import Project


@pytest.mark.parametrize("code", ["0", "3"])
def test_a_task_calling_sys_exit_fails_the_row(project: Project, code: str) -> None:
    task_id = project.enqueue("exit-now", "--code", code)
    project.work()
    row = project.row(task_id)
    assert row.status == "failed"
    assert "SystemExit" in row.log


def test_two_sigterms_within_a_second_do_not_fail_a_job_that_completes(project: Project) -> None:
    """RQ ignores a repeated signal within 1 s (its worker pool sends duplicates)."""
    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "3", "--marker", str(marker))
    assert project.signal_worker_while_running(marker, [0, 0.2]) == 0
    row = project.row(task_id)
    assert row.status == "finished", row.log
    assert row.result == {"result": "slept"}


def test_cold_shutdown_with_retries_left_requeues_in_row_and_redis(project: Project) -> None:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "30", "--marker", str(marker), "--retries", "1")
    project.signal_worker_while_running(marker, [0, 1.5])
    row = project.row(task_id)
    assert row.status == "queued", row.log
    assert "cold shutdown" in row.log and row.progress == 0
    runtime = project.runtime()
    job = Job.fetch(str(task_id), connection=runtime.redis, serializer=JSONSerializer)
    assert job.get_status() == "queued"  # RQ agrees: the retry is in the queue now
    assert job.retries_left == 0


def test_refused_job_with_retries_fails_for_good(project: Project) -> None:
    """A job naming an unregistered function is refused once, not scheduled for a retry."""
    from rq.job import Retry

    runtime = project.runtime()
    record = runtime.store.insert(
        name="add", description="smuggled", queue="default", args=[], kwargs={}, timeout_s=30, max_retries=2
    )
    queue = runtime.queue("default")
    job = queue.create_job("os.getcwd", job_id=record.job_id, retry=Retry(max=2, interval=1))
    queue.enqueue_job(job)
    project.work()
    row = project.row(record.id)
    assert row.status == "failed", row.log
    assert "not a registered task" in row.log


def test_kwargs_json_is_not_overridden_by_option_defaults(project: Project) -> None:
    task_id = project.enqueue("count-words", "--text", "a b a", "--kwargs", '{"top": 1}')
    kwargs = project.row(task_id).kwargs
    assert (kwargs["text"], kwargs["top"]) == ("a b a", 1)
    project.work()
    assert project.row(task_id).result["top"] == [["a", 2]]


def test_progress_in_a_tight_loop_is_throttled_and_the_last_message_kept(project: Project) -> None:
    client = project.redis.client()
    task_id = project.enqueue("chatty-progress", "--reports", "5000")
    client.config_resetstat()
    project.work()
    row = project.row(task_id)
    assert row.status == "finished" and row.progress == 100
    assert row.progress_message == "item 5000 of 5000"
    stats = client.info("commandstats")
    # save_meta is one HSET; 5000 unthrottled reports would be 5000 of them
    assert stats.get("cmdstat_hset", {}).get("calls", 0) < 100
