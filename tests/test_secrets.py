"""Passwords in URLs never reach what rqjobs writes: messages, row logs, status, tracebacks, logs."""

from __future__ import annotations

import pytest

from tests.conftest import Project
from tests.helpers import row_count
from tests.test_cli import cli

SECRET = "s3cretPW"


def test_query_password_masked_in_error_row_log_and_show(project: Project) -> None:
    url = f"redis://127.0.0.1:1/0?password={SECRET}"
    result = cli(project, "enqueue", "add", "-d", "x", "--a", "1", "--b", "2", env={"RQJOBS_REDIS_URL": url})
    assert result.exit_code == 1, result.output
    assert SECRET not in result.output
    assert "password=***" in result.output
    row = project.row(1)
    assert row.status == "failed"
    assert SECRET not in row.log and "***" in row.log
    shown = cli(project, "show", "1")
    assert shown.exit_code == 0 and SECRET not in shown.output


def test_debug_traceback_is_masked(project: Project) -> None:
    url = f"redis://127.0.0.1:1/0?password={SECRET}"
    project.env["RQJOBS_REDIS_URL"] = url
    result = project.rqjobs("--debug", "enqueue", "add", "-d", "x", "--a", "1", "--b", "2")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_redis_status_masks_userinfo(project: Project) -> None:
    result = cli(project, "redis", "status", env={"RQJOBS_REDIS_URL": f"redis://user:{SECRET}@127.0.0.1:1/0"})
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output and "user:***@" in result.output


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pa#ss" + SECRET + "@127.0.0.1:6379/0",
        "redis://:pa/ss" + SECRET + "@127.0.0.1:6379/0",
        "redis://u:p@ss" + SECRET + "@127.0.0.1:6379/0",
        "rediss//:" + SECRET + "@127.0.0.1:6379/0",
        "http://:" + SECRET + "@127.0.0.1:6379/0",
    ],
    ids=["hash", "slash", "at", "scheme-typo", "wrong-scheme"],
)
def test_unparsable_url_refused_at_configuration(project: Project, url: str) -> None:
    result = cli(project, "enqueue", "add", "-d", "x", "--a", "1", "--b", "2", env={"RQJOBS_REDIS_URL": url})
    assert result.exit_code == 2, result.output
    assert SECRET not in result.output
    assert "redis_url" in result.output
    assert row_count(project) == 0


def test_worker_log_and_row_log_mask_a_url_in_an_exception(project: Project) -> None:
    task_id = project.enqueue("fail-always", "--message", f"cannot reach postgresql://app:{SECRET}@db/app")
    worker = project.work()
    assert SECRET not in worker.stdout + worker.stderr
    assert "RuntimeError" in worker.stdout + worker.stderr
    row = project.row(task_id)
    assert row.status == "failed"
    assert SECRET not in row.log and "app:***@db" in row.log
