"""Where plain RQ leaves the row lying (issue 3): timeouts, killed work horses, retries
with intervals, burst workers and scheduled jobs. Real workers, a real Redis, SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, wait_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def add_settings(project: Project, **values: Any) -> None:
    """Add settings to the project's rqjobs.toml."""
    current = tomllib.loads(project.config_path.read_text())
    project.write_config(**{**current, **values})


def rq_job(project: Project, task_id: int) -> Any:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    assert project.redis is not None
    return Job.fetch(str(task_id), connection=project.redis.client(), serializer=JSONSerializer)


def in_failed_registry(project: Project, task_id: int, queue: str = "default") -> bool:
    return str(task_id) in project.runtime().queue(queue).failed_job_registry.get_job_ids()


def scheduled_score(project: Project, task_id: int, queue: str = "default") -> float | None:
    assert project.redis is not None
    return project.redis.client().zscore(f"rq:scheduled:{queue}", str(task_id))


def read_pid(marker: Path) -> int:
    return int(marker.read_text())


def wait_for_new_pid(marker: Path, old: int | None, timeout: float = 30) -> int:
    def new_pid() -> int | None:
        try:
            pid = read_pid(marker)
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid != old else None

    return wait_for(new_pid, timeout=timeout, message=f"a new work horse pid in {marker.name}")


def stop(worker: subprocess.Popen[str]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


# -- timeouts ---------------------------------------------------------------------------


def test_swallowed_timeout_fails_the_row_with_and_without_retries(project: Project) -> None:
    once = project.enqueue("swallow-timeout", "--seconds", "5", "--timeout", "1")
    twice = project.enqueue("swallow-timeout", "--seconds", "5", "--timeout", "1", "--retries", "1")
    after = project.enqueue("add", "--a", "1", "--b", "2")
    project.work()

    row = project.row(once)
    assert row.status == "failed", row.log
    assert row.attempts == 1
    assert row.result is None  # "swallowed" was never recorded as a success
    assert "--- attempt 1 timed out after 1 s" in row.log
    assert "caught the timeout and returned anyway" in row.log
    # RQ records the failure too: the decorator raised after the task returned
    assert rq_job(project, once).get_status() == "failed"
    assert in_failed_registry(project, once)

    row = project.row(twice)
    assert row.status == "failed", row.log
    assert row.attempts == 2
    assert row.log.count("timed out after 1 s") == 2
    assert "--- attempt 2 timed out after 1 s" in row.log
    assert in_failed_registry(project, twice)

    assert project.row(after).status == "finished"


def test_task_that_never_returns_is_killed_and_retried(project: Project) -> None:
    """A task ignoring SIGALRM is killed timeout + grace after it started; retries follow;
    the burst worker waits for the retry's interval, then goes on with the next job."""
    add_settings(project, timeout_grace_s=1)
    marker = project.root / "horse.pid"
    stuck = project.enqueue(
        "ignore-timeout",
        "--seconds",
        "120",
        "--marker",
        str(marker),
        "--timeout",
        "1",
        "--retries",
        "1",
        "--retry-interval",
        "1",
    )
    after = project.enqueue("add", "--a", "2", "--b", "3")
    result = project.work(timeout=60)

    row = project.row(stuck)
    assert row.status == "failed", row.log
    assert row.attempts == 2
    assert row.log.count("timed out after 1 s") == 2, row.log
    assert "SIGKILL" in row.log and "grace" in row.log
    assert row.result is None
    assert in_failed_registry(project, stuck)
    with pytest.raises(ProcessLookupError):
        os.kill(read_pid(marker), 0)  # the second horse is gone too
    assert project.row(after).status == "finished"
    assert "killing its work horse" in result.stderr + result.stdout


def test_timeout_grace_must_be_positive(project: Project) -> None:
    add_settings(project, timeout_grace_s=0)
    result = project.rqjobs("worker", "--burst")
    assert result.returncode == 2
    assert "timeout_grace_s must be positive" in result.stderr
    assert "Traceback" not in result.stderr


# -- killed work horses -----------------------------------------------------------------


def test_kill_9_of_the_horse_fails_the_row_and_the_worker_goes_on(project: Project) -> None:
    marker = project.root / "horse.pid"
    victim = project.enqueue("sleep-for", "--seconds", "60", "--marker", str(marker))
    after = project.enqueue("add", "--a", "20", "--b", "22")
    worker = project.start_worker("--burst")
    try:
        pid = wait_for_new_pid(marker, None)
        assert project.row(victim).status == "running"
        os.kill(pid, signal.SIGKILL)
        row = wait_for(
            lambda: (r := project.row(victim)).status == "failed" and r,
            timeout=10,
            message="the row to fail after kill -9",
        )
        assert worker.wait(30) == 0
    finally:
        stop(worker)
    assert row.attempts == 1
    assert "--- attempt 1 work horse killed by SIGKILL (kill -9 or the OOM killer)" in row.log
    assert str(pid) in row.log
    assert row.finished_at is not None
    assert rq_job(project, victim).get_status() == "failed"
    assert project.row(after).status == "finished"
    assert project.row(after).result == {"result": 42}


def test_kill_9_with_a_retry_left_without_interval_runs_it_again(project: Project) -> None:
    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-first", "--marker", str(marker), "--retries", "1")
    worker = project.start_worker("--burst")
    try:
        os.kill(wait_for_new_pid(marker, None), signal.SIGKILL)
        assert worker.wait(30) == 0
    finally:
        stop(worker)
    row = project.row(task_id)
    assert row.status == "finished", row.log
    assert row.attempts == 2
    assert row.result == {"result": "second run"}
    assert row.log.count("--- attempt") == 1
    assert "--- attempt 1 work horse killed by SIGKILL" in row.log


def test_kill_9_with_a_retry_left_schedules_it_then_fails(project: Project) -> None:
    marker = project.root / "horse.pid"
    victim = project.enqueue(
        "sleep-for", "--seconds", "60", "--marker", str(marker), "--retries", "1", "--retry-interval", "3"
    )
    worker = project.start_worker()
    seen: list[tuple[str, int]] = []

    def status_is(wanted: str) -> Any:
        row = project.row(victim)
        if not seen or seen[-1] != (row.status, row.attempts):
            seen.append((row.status, row.attempts))
        return row if row.status == wanted else None

    try:
        first = wait_for_new_pid(marker, None)
        killed_at = datetime.now(timezone.utc)
        os.kill(first, signal.SIGKILL)
        row = wait_for(
            lambda: status_is("scheduled"), timeout=10, interval=0.02, message=f"scheduled: {seen}"
        )
        assert row.attempts == 1
        assert row.scheduled_for is not None
        assert killed_at + timedelta(seconds=3) <= row.scheduled_for <= killed_at + timedelta(seconds=10)
        # the row and RQ's scheduled registry name the same time
        assert scheduled_score(project, victim) == row.scheduled_for.timestamp()
        assert "--- attempt 1 work horse killed by SIGKILL" in row.log
        retry_at = row.scheduled_for

        second = wait_for_new_pid(marker, first)
        row = project.row(victim)
        assert row.status == "running" and row.attempts == 2, seen
        assert row.started_at is not None and row.started_at >= retry_at
        os.kill(second, signal.SIGKILL)
        row = wait_for(lambda: status_is("failed"), timeout=10, message=f"failed: {seen}")
    finally:
        stop(worker)
    assert row.attempts == 2
    assert row.log.count("work horse killed by SIGKILL") == 2, row.log
    assert "--- attempt 2 work horse killed by SIGKILL" in row.log
    assert in_failed_registry(project, victim)


# -- retries with intervals -------------------------------------------------------------


def test_retries_with_intervals_go_through_the_scheduler(project: Project) -> None:
    marker = project.root / "attempts.txt"
    task_id = project.enqueue(
        "record-and-fail", "--marker", str(marker), "--retries", "2", "--retry-interval", "1,2"
    )
    worker = project.start_worker()
    seen: list[tuple[str, int, datetime | None]] = []
    try:

        def final() -> Any:
            row = project.row(task_id)
            snapshot = (row.status, row.attempts, row.scheduled_for)
            if not seen or seen[-1] != snapshot:
                seen.append(snapshot)
            return row if row.status == "failed" else None

        row = wait_for(final, timeout=30, interval=0.02, message="the retries to run out")
    finally:
        stop(worker)

    assert row.attempts == 3
    assert row.scheduled_for is None
    for attempt in (1, 2, 3):
        assert f"--- attempt {attempt} failed" in row.log
    assert row.log.count("Traceback (most recent call last)") == 3
    assert row.log.count("RuntimeError: recorded and failed") == 3
    # between the attempts the row said when the next one runs
    waits = [(attempts, when) for status, attempts, when in seen if status == "scheduled"]
    assert {attempts for attempts, _ in waits} == {1, 2}, seen
    assert all(when is not None for _, when in waits)
    # and the attempts really were that far apart (1 s, then 2 s)
    starts = [float(line) for line in marker.read_text().split()]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 1.0, starts
    assert starts[2] - starts[1] >= 2.0, starts
    assert rq_job(project, task_id).get_status() == "failed"
    assert in_failed_registry(project, task_id)


def test_burst_worker_waits_for_the_retries_it_made(project: Project) -> None:
    marker = project.root / "flaky.count"
    flaky = project.enqueue(
        "flaky", "--marker", str(marker), "--failures", "2", "--retries", "2", "--retry-interval", "1"
    )
    stamps = project.root / "attempts.txt"
    failing = project.enqueue(
        "record-and-fail", "--marker", str(stamps), "--retries", "1", "--retry-interval", "2"
    )
    later = project.enqueue("add", "--a", "1", "--b", "1", "--in", "10m")
    project.work(timeout=60)

    row = project.row(flaky)
    assert row.status == "finished", row.log
    assert row.attempts == 3
    assert row.result == {"result": "succeeded after 2 failures"}
    assert row.log.count("--- attempt") == 2

    row = project.row(failing)
    assert row.status == "failed", row.log
    assert row.attempts == 2
    starts = [float(line) for line in stamps.read_text().split()]
    assert len(starts) == 2 and starts[1] - starts[0] >= 2.0, starts

    # a job scheduled for later by someone else does not hold the burst up
    row = project.row(later)
    assert row.status == "scheduled" and row.attempts == 0
    assert scheduled_score(project, later) is not None


def test_sigterm_stops_a_burst_worker_waiting_for_a_retry(project: Project) -> None:
    task_id = project.enqueue("fail-always", "--retries", "1", "--retry-interval", "60")
    worker = project.start_worker("--burst", log_name="burst.log")
    try:
        wait_for(lambda: project.row(task_id).status == "scheduled", message="the retry to be scheduled")
        wait_for(
            lambda: "waiting" in (project.root / "burst.log").read_text(),
            timeout=10,
            message="the burst worker to wait for the retry",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:
        stop(worker)
    row = project.row(task_id)
    assert row.status == "scheduled" and row.attempts == 1
    assert scheduled_score(project, task_id) == row.scheduled_for.timestamp()


def test_burst_without_scheduler_leaves_retries_scheduled(project: Project) -> None:
    task_id = project.enqueue("fail-always", "--retries", "1", "--retry-interval", "1")
    project.work("--no-scheduler", timeout=30)
    row = project.row(task_id)
    assert row.status == "scheduled" and row.attempts == 1
    assert scheduled_score(project, task_id) == row.scheduled_for.timestamp()


# -- permanent failures -----------------------------------------------------------------


def test_permanent_task_error_skips_retries(project: Project) -> None:
    marker = project.root / "runs.count"
    task_id = project.enqueue(
        "fail-permanently", "--marker", str(marker), "--retries", "3", "--retry-interval", "1"
    )
    project.work(timeout=30)
    row = project.row(task_id)
    assert row.status == "failed", row.log
    assert row.attempts == 1
    assert marker.read_text() == "1"
    assert "--- attempt 1 failed permanently" in row.log
    assert "PermanentTaskError: the customer does not exist" in row.log
    job = rq_job(project, task_id)
    assert job.get_status() == "failed"
    assert in_failed_registry(project, task_id)
    assert scheduled_score(project, task_id) is None


def test_permanent_task_error_is_exported() -> None:
    import rqjobs
    from rqjobs.tasks.commons import PermanentTaskError

    assert rqjobs.PermanentTaskError is PermanentTaskError
    assert issubclass(PermanentTaskError, Exception)


# -- scheduling -------------------------------------------------------------------------


def test_in_schedules_and_the_worker_runs_it_when_due(project: Project) -> None:
    before = datetime.now(timezone.utc)
    task_id = project.enqueue("add", "--a", "3", "--b", "4", "--in", "2s")
    after = datetime.now(timezone.utc)
    row = project.row(task_id)
    assert row.status == "scheduled" and row.attempts == 0
    assert row.scheduled_for is not None and row.scheduled_for.tzinfo is not None
    assert before + timedelta(seconds=2) <= row.scheduled_for <= after + timedelta(seconds=3)
    assert row.scheduled_for.microsecond == 0
    assert scheduled_score(project, task_id) == row.scheduled_for.timestamp()
    due = row.scheduled_for

    worker = project.start_worker()
    try:
        row = wait_for(
            lambda: (r := project.row(task_id)).status == "finished" and r,
            timeout=20,
            message="the scheduled task to run",
        )
    finally:
        stop(worker)
    assert row.result == {"result": 7}
    assert row.started_at is not None and row.started_at >= due


def test_burst_worker_started_after_the_due_time_runs_it(project: Project) -> None:
    task_id = project.enqueue("add", "--a", "1", "--b", "2", "--in", "1s")
    wait_for(lambda: datetime.now(timezone.utc) >= project.row(task_id).scheduled_for, timeout=5)
    project.work()
    assert project.row(task_id).status == "finished"


def test_at_naive_time_is_local_time_stored_in_utc(project: Project) -> None:
    project.env["TZ"] = "Asia/Kolkata"  # UTC+05:30, no daylight saving
    task_id = project.enqueue("add", "--a", "1", "--b", "1", "--at", "2036-12-01T09:00")
    row = project.row(task_id)
    assert row.status == "scheduled"
    assert row.scheduled_for == datetime(2036, 12, 1, 3, 30, tzinfo=timezone.utc)
    assert scheduled_score(project, task_id) == row.scheduled_for.timestamp()
    offset = project.enqueue("add", "--a", "1", "--b", "1", "--at", "2036-12-01T09:00+01:00")
    assert project.row(offset).scheduled_for == datetime(2036, 12, 1, 8, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--at", "2001-01-01T00:00"], "in the past"),
        (["--at", "next tuesday"], "not a time"),
        (["--at", "2036-13-45T09:00"], "not a time"),
        (["--in", "soon"], "not a duration"),
        (["--in", "0"], "must be positive"),
        (["--in", "0s"], "must be positive"),
        (["--in", "5s", "--at", "2036-12-01T09:00"], "not both"),
        (["--in", "1e400"], "not a duration"),
        (["--in", "100000000w"], "too long"),
        (["--at", "9999-12-31T23:59:59.5"], "out of range"),
    ],
)
def test_bad_schedule_is_refused_with_no_row(project: Project, options: list[str], message: str) -> None:
    result = project.rqjobs("enqueue", "add", "--description", "bad time", "--a", "1", "--b", "1", *options)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    # reopen the database: nothing was written
    from rqjobs.store.engine import forget_engines

    forget_engines()
    assert project.store().find(limit=None) == []
    assert project.redis is not None
    assert project.redis.client().keys("rq:job:*") == []


def test_enqueue_task_at_and_delay(project: Project) -> None:
    from rqjobs import enqueue_task
    from rqjobs.exceptions import InvalidSchedule

    runtime = project.runtime()
    delayed = enqueue_task("add", 1, 2, description="later", delay_s=90, runtime=runtime)
    assert delayed.status == "scheduled"
    stored = project.row(delayed.id)
    assert stored.scheduled_for == delayed.scheduled_for
    assert timedelta(seconds=89) < stored.scheduled_for - datetime.now(timezone.utc) <= timedelta(seconds=91)
    assert scheduled_score(project, delayed.id) == stored.scheduled_for.timestamp()

    local = datetime.now().replace(microsecond=0) + timedelta(hours=2)  # naive: local time
    at = enqueue_task("add", 1, 2, description="at", at=local, runtime=runtime)
    assert project.row(at.id).scheduled_for == local.astimezone(timezone.utc)

    count = len(project.store().find(limit=None))
    with pytest.raises(InvalidSchedule, match="in the past"):
        enqueue_task(
            "add",
            1,
            2,
            description="past",
            at=datetime.now(timezone.utc) - timedelta(seconds=1),
            runtime=runtime,
        )
    with pytest.raises(InvalidSchedule, match="not both"):
        enqueue_task("add", 1, 2, description="both", at=local, delay_s=5, runtime=runtime)
    with pytest.raises(InvalidSchedule, match="positive"):
        enqueue_task("add", 1, 2, description="negative", delay_s=-1, runtime=runtime)
    assert len(project.store().find(limit=None)) == count


# -- results ----------------------------------------------------------------------------


def test_results_are_kept_for_the_configured_ttl(project: Project) -> None:
    from rqjobs import defaults

    task_id = project.enqueue("add", "--a", "1", "--b", "1")
    assert defaults.RESULT_TTL_S >= 86_400
    assert rq_job(project, task_id).result_ttl == defaults.RESULT_TTL_S

    add_settings(project, result_ttl_s=5000, failure_ttl_s=7000)
    kept = project.enqueue("add", "--a", "2", "--b", "2")
    failed = project.enqueue("fail-always")
    job = rq_job(project, kept)
    assert job.result_ttl == 5000
    assert job.failure_ttl == 7000
    project.work()
    assert project.row(kept).status == "finished"
    job = rq_job(project, kept)
    assert job.get_status() == "finished"
    assert job.return_value() == {"result": 4}
    assert project.redis is not None
    ttl_s = project.redis.client().ttl(f"rq:job:{kept}")
    assert 4900 < ttl_s <= 5000
    assert 6900 < project.redis.client().ttl(f"rq:job:{failed}") <= 7000
