"""A running worker and its edited ``rqjobs.toml``: what it takes up between jobs (a
``templates_dir`` added later, the mail sender), what it logs as needing a restart
(``tasks_modules``, the connection URLs), a file that no longer parses, and an input
error met in the worker (a template gone) failing the row without a retry.

Real workers throughout: a long-running one edited under while it runs, and a burst one.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TESTS_DIR, Project, wait_for
from tests.helpers import configure, read_row


@pytest.fixture
def worker(project: Project) -> Iterator[subprocess.Popen[str]]:
    """A long-running (not burst) worker, its output in worker.log; stopped at the end."""
    proc = project.start_worker()
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _log(project: Project) -> str:
    return (project.root / "worker.log").read_text()


def _ended(project: Project, task_id: int) -> object:
    row = read_row(project, task_id)  # not through the config file, which a test breaks
    return row if row.status in ("finished", "failed", "canceled") else None


def _mail(row: object) -> email.message.EmailMessage:
    path = Path(row.result["path"])  # type: ignore[attr-defined]
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def _write_template(folder: Path, text: str) -> None:
    (folder / "email").mkdir(parents=True, exist_ok=True)
    (folder / "email" / "custom.txt").write_text(text)


def test_a_running_worker_takes_up_an_edited_config_between_jobs(
    project: Project, worker: subprocess.Popen[str]
) -> None:
    # a first job: the worker is up and has run one job on the settings it started with
    first = project.enqueue("add", "--a", "1", "--b", "2")
    assert wait_for(lambda: _ended(project, first), timeout=90, message="the first job").status == "finished"
    templates = project.root / "templates"
    _write_template(templates, "Custom hello {{ name }}\n")
    configure(project, templates_dir="templates", mail={"sender": "Ops <ops@example.com>"})
    # enqueue reads the new file and finds the template; the worker must too
    task_id = project.enqueue(
        "send-mail", "--to", "ana@example.com", "--subject", "Hi", "--template", "email/custom",
        "--var", "name=Ana", description="custom template",
    )  # fmt: skip
    row = wait_for(lambda: _ended(project, task_id), timeout=90, message="the mail job")
    assert row.status == "finished", row.log
    message = _mail(row)
    assert message.get_body(preferencelist=("plain",)).get_content().rstrip() == "Custom hello Ana"  # type: ignore[union-attr]
    assert message["From"].addresses[0].addr_spec == "ops@example.com"
    assert "reloaded: templates_dir, mail applied" in _log(project), _log(project)

    # what needs a restart: logged, not applied. The new redis_url names the same server
    # (so the CLI still reaches this worker); tasks_modules gains a module the worker lacks
    shutil.copy(TESTS_DIR / "support" / "typed_tasks.py", project.root / "typed_tasks.py")
    assert project.redis is not None
    configure(
        project,
        redis_url=project.redis.url + "?db=0",
        tasks_modules=("sample_tasks", "typed_tasks"),
        templates_dir="templates",
        mail={"sender": "Desk <desk@example.com>"},
    )
    task_id = project.enqueue(
        "send-mail", "--to", "ana@example.com", "--subject", "Hi", "--template", "email/custom",
        "--var", "name=Ana", description="after the second edit",
    )  # fmt: skip
    row = wait_for(lambda: _ended(project, task_id), timeout=90, message="the job after the second edit")
    assert row.status == "finished", row.log
    assert _mail(row)["From"].addresses[0].addr_spec == "desk@example.com"  # applied
    log = _log(project)
    assert "tasks_modules, redis_url changed; restart the worker to use the new value (not applied)" in log, (
        log
    )
    assert "reloaded: mail applied" in log, log

    # a file that no longer parses: logged, the worker keeps its settings and goes on
    from rqjobs.api import enqueue_task

    runtime = project.runtime()  # read before the bad edit: this process still enqueues
    project.config_path.write_text(project.config_path.read_text() + "this is = = not toml\n")
    broken = enqueue_task("add", 2, 3, description="after a broken edit", runtime=runtime)
    row = wait_for(lambda: _ended(project, broken.id), timeout=90, message="the job after a broken edit")
    assert row.status == "finished" and row.result == {"result": 5}
    assert "not applied, the worker keeps its settings" in _log(project)
    assert worker.poll() is None  # still running
    assert "Traceback" not in _log(project)


def test_an_input_error_met_in_the_worker_fails_the_row_without_a_retry(project: Project) -> None:
    templates = project.root / "templates"
    _write_template(templates, "Hello {{ name }}\n")
    configure(project, templates_dir="templates")
    task_id = project.enqueue(
        "send-mail", "--to", "ana@example.com", "--subject", "Hi", "--template", "email/custom",
        "--var", "name=Ana", "--retries", "3", "--retry-interval", "1", description="template goes away",
    )  # fmt: skip
    (templates / "email" / "custom.txt").unlink()  # between the enqueue's check and the worker
    project.work()
    row = project.row(task_id)
    assert row.status == "failed" and row.attempts == 1, row.log
    assert row.error is not None and "template 'email/custom' not found" in row.error
    assert "an input error: not retried" in row.log
