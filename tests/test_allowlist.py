"""The worker runs registered code only: jobs written into rqjobs' Redis behind its back.

Each job is crafted the way an attacker with write access to the Redis would write it
(RQ's own ``create_job``), then a real burst worker takes it. Nothing the job names
outside the registry may be imported or called; the row fails with the reason and RQ
files the job as failed too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rq import Callback
from rq.registry import FailedJobRegistry

from tests.conftest import Project

EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")


def boom(*args, **kwargs):
    Path({marker!r}).write_text("called")
"""


def _write_evil_module(project: Project) -> Path:
    marker = project.root / "evil-marker"
    (project.root / "evil_cb.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    return marker


def _add_path(runtime: object) -> str:
    from rqjobs.tasks.registry import get_task

    return get_task("add").path


@pytest.mark.parametrize(
    "callbacks",
    [
        {"on_success": Callback("builtins.print")},
        {"on_failure": Callback("evil_cb.boom")},
        {"on_success": Callback("evil_cb.boom")},
        {"on_stopped": Callback("evil_cb.boom")},
    ],
    ids=["success-print", "failure-file", "success-file", "stopped-file"],
)
def test_job_with_a_callback_is_refused_before_anything_is_imported(
    project: Project, callbacks: dict[str, Callback]
) -> None:
    marker = _write_evil_module(project)
    runtime = project.runtime()
    record = runtime.store.insert(
        name="add", description="crafted", queue="default", args=[], kwargs={"a": 1, "b": 2}, timeout_s=30
    )
    queue = runtime.queue("default")
    job = queue.create_job(_add_path(runtime), kwargs={"a": 1, "b": 2}, job_id=record.job_id, **callbacks)
    queue.enqueue_job(job)
    project.work()
    row = project.row(record.id)
    assert row.status == "failed", row.log
    assert "callback" in row.log and "refused" in row.log
    assert row.result is None
    assert not marker.exists(), marker.read_text()
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    job.refresh()
    assert job.get_status() == "failed"


def test_foreign_job_with_a_callback_gets_a_failed_row(project: Project) -> None:
    """A job enqueued without rqjobs (no row, a non-numeric id) is refused and recorded."""
    marker = _write_evil_module(project)
    runtime = project.runtime()
    queue = runtime.queue("default")
    job = queue.create_job(
        _add_path(runtime), kwargs={"a": 1, "b": 2}, job_id="crafted-job", on_failure=Callback("evil_cb.boom")
    )
    queue.enqueue_job(job)
    project.work()
    assert not marker.exists()
    job.refresh()
    assert job.get_status() == "failed"
    task_id = int(job.meta["rqjobs_task_id"])
    row = project.row(task_id)
    assert row.status == "failed"
    assert "evil_cb.boom" in row.log


def test_job_with_dependencies_is_refused(project: Project) -> None:
    runtime = project.runtime()
    queue = runtime.queue("default")
    first = runtime.store.insert(
        name="add", description="first", queue="default", args=[], kwargs={"a": 1, "b": 2}, timeout_s=30
    )
    parent = queue.create_job(_add_path(runtime), kwargs={"a": 1, "b": 2}, job_id=first.job_id)
    queue.enqueue_job(parent)
    project.work()
    assert project.row(first.id).status == "finished"
    second = runtime.store.insert(
        name="add", description="dependent", queue="default", args=[], kwargs={"a": 1, "b": 2}, timeout_s=30
    )
    child = queue.create_job(
        _add_path(runtime), kwargs={"a": 1, "b": 2}, job_id=second.job_id, depends_on=[parent.id]
    )
    queue.enqueue_job(child)
    project.work()
    row = project.row(second.id)
    assert row.status == "failed", row.log
    assert "depends on" in row.log
    assert child.id in FailedJobRegistry(queue=queue).get_job_ids()


def test_registered_job_without_callbacks_still_runs(project: Project) -> None:
    task_id = project.enqueue("add", "--a", "2", "--b", "3")
    project.work()
    assert project.row(task_id).status == "finished"
