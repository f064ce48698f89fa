"""Built-in tasks check their arguments again in the worker; send-mail's headers and attachments."""

from __future__ import annotations

import pytest

from tests.conftest import Project
from tests.helpers import configure
from tests.test_cli import cli


def _crafted(project: Project, name: str, kwargs: dict[str, object]) -> int:
    """A job written straight into Redis, as someone who can write to it would, skipping enqueue's checks."""
    from rqjobs.tasks.registry import get_task

    runtime = project.runtime()
    record = runtime.store.insert(
        name=name, description="crafted", queue="default", args=[], kwargs=kwargs, timeout_s=30
    )
    queue = runtime.queue("default")
    queue.enqueue_job(queue.create_job(get_task(name).path, kwargs=kwargs, job_id=record.job_id))
    return record.id


def test_count_words_reads_no_file_url_from_a_crafted_job(project: Project) -> None:
    task_id = _crafted(project, "count-words", {"url": "file:///etc/passwd"})
    project.work()
    row = project.row(task_id)
    assert row.status == "failed", row.log
    assert row.result is None
    assert "only http(s) URLs" in row.log


def test_send_mail_attaches_nothing_outside_attachments_dirs_from_a_crafted_job(project: Project) -> None:
    configure(project, mail={"backend": "outbox", "outbox_dir": str(project.root / "outbox")})
    task_id = _crafted(
        project, "send-mail", {"to": ["ann@example.com"], "subject": "hi", "attach": ["/etc/passwd"]}
    )
    project.work()
    row = project.row(task_id)
    assert row.status == "failed", row.log
    assert "outside the folders" in row.log
    assert not list((project.root / "outbox").glob("*.eml"))  # nothing mailed


def test_attachments_dirs_at_enqueue(project: Project) -> None:
    docs = project.root / "docs"
    docs.mkdir()
    (docs / "guide.txt").write_text("read me")
    outside = project.root.parent / "secret.txt"
    outside.write_text("nope")
    (docs / "link.txt").symlink_to(outside)
    base = ("send-mail", "-d", "x", "--to", "ann@example.com", "--subject", "hi")
    assert cli(project, "enqueue", *base, "--attach", str(docs / "guide.txt")).exit_code == 0
    for path in (outside, docs / "link.txt"):
        result = cli(project, "enqueue", *base, "--attach", str(path))
        assert result.exit_code == 2, result.output
        assert "attachments_dirs" in result.output
    configure(project, mail={"attachments_dirs": [str(project.root.parent)]})
    assert cli(project, "enqueue", *base, "--attach", str(outside)).exit_code == 0


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\v", "\f", "\r", "\n", "\x1c", "\x00"])
def test_header_with_a_line_separator_refused_at_enqueue(project: Project, separator: str) -> None:
    before = len(project.store().find(limit=100))
    result = cli(
        project,
        "enqueue",
        "send-mail",
        "-d",
        "x",
        "--to",
        "ann@example.com",
        "--subject",
        f"a{separator}Bcc: x@evil.example",
    )
    assert result.exit_code == 2, result.output
    assert len(project.store().find(limit=100)) == before
