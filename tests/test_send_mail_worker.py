"""send-mail end to end: `rqjobs enqueue send-mail` and a real worker subprocess.

The SMTP server is aiosmtpd on 127.0.0.1 in this process; the worker talks to it over
loopback with smtplib, exactly as it would to a real relay.
"""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.helpers import (
    assert_refused,
    configure,
    read_row,
    redis_job_keys,
    row_count,
    work_in,
)
from tests.support.smtp import Collector, StartServer


class RefuseEveryRecipient(Collector):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "550 5.1.1 mailbox unavailable"


def smtp_config(project: Project, port: int) -> None:
    configure(
        project,
        mail={
            "backend": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "timeout_s": 10,
            "sender": "Example Team <team@example.com>",
        },
    )


def test_send_mail_over_smtp_with_a_worker_in_another_folder(
    project: Project, smtp_server: StartServer, tmp_path: Path
) -> None:
    handler = Collector()
    smtp_config(project, smtp_server(handler))
    (project.root / "docs").mkdir()
    (project.root / "docs" / "guide.pdf").write_bytes(b"%PDF-1.4 guide")

    # relative --attach, checked against the enqueuer's folder ...
    task_id = project.enqueue(
        "send-mail",
        "--to", "a@example.com",
        "--to", "b@example.com",
        "--subject", "Hi",
        "--template", "email/welcome",
        "--var", "name=Ana",
        "--attach", "docs/guide.pdf",
        description="welcome",
    )  # fmt: skip
    row = read_row(project, task_id)
    assert row.status == "queued" and row.description == "welcome"
    assert row.kwargs["attach"] == [str(project.root / "docs" / "guide.pdf")]  # absolute in the row
    assert row.max_retries == 2  # send-mail's own retry policy

    # ... and read by a worker that runs somewhere else
    work_in(tmp_path / "elsewhere", project)

    row = read_row(project, task_id)
    assert row.status == "finished", row.log
    assert row.attempts == 1 and row.progress == 100 and row.log is None
    assert row.result["recipients"] == ["a@example.com", "b@example.com"]
    assert row.result["backend"] == "smtp"

    [envelope] = handler.envelopes
    assert envelope.mail_from == "team@example.com"
    assert envelope.rcpt_tos == ["a@example.com", "b@example.com"]
    [msg] = handler.messages()
    assert msg["Subject"] == "Hi"
    assert msg["From"].addresses[0].addr_spec == "team@example.com"
    assert msg["From"].addresses[0].display_name == "Example Team"
    assert [a.addr_spec for a in msg["To"].addresses] == ["a@example.com", "b@example.com"]
    assert msg["Message-ID"] == row.result["message_id"]
    assert msg["Date"]
    assert msg.get_content_type() == "multipart/mixed"

    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().startswith("Hello Ana,")
    assert "Hello Ana," in html.get_content() and "<title>Hi</title>" in html.get_content()

    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "guide.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.4 guide"


def test_send_mail_default_outbox(project: Project) -> None:
    task_id = project.enqueue(
        "send-mail", "--to", "Ana <ana@example.com>", "--subject", "Olá Ana", "--var", "name=Ana",
        description="welcome to the outbox",
    )  # fmt: skip
    project.work()

    row = read_row(project, task_id)
    assert row.status == "finished", row.log
    assert row.result["backend"] == "outbox"
    assert row.result["recipients"] == ["ana@example.com"]
    path = Path(row.result["path"])
    # no [mail] table: the outbox is data_dir/outbox, and data_dir is .rqjobs beside the config
    assert path.parent == project.root / ".rqjobs" / "outbox"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "Olá Ana"
    assert msg["Message-ID"] == row.result["message_id"]
    assert msg["To"].addresses[0].display_name == "Ana"
    assert msg.get_body(preferencelist=("plain",)).get_content().startswith("Hello Ana,")  # type: ignore[union-attr]
    assert msg.get_body(preferencelist=("html",)) is not None


def test_refusing_server_fails_the_row_with_its_reply_after_the_retries(
    project: Project, smtp_server: StartServer
) -> None:
    handler = RefuseEveryRecipient()
    smtp_config(project, smtp_server(handler))
    common = ("send-mail", "--to", "a@example.com", "--subject", "Hi")
    no_retry = project.enqueue(*common, "--retries", "0", description="no retries")
    fast_retries = project.enqueue(*common, "--retry-interval", "0", description="task's 2 retries, at once")
    project.work()
    # a burst worker waits for the retries it scheduled; without the scheduler it does not,
    # which leaves the default policy's first retry visible a minute ahead
    default_policy = project.enqueue(*common, description="task's own policy")
    project.work("--no-scheduler")

    reply = "a@example.com: 550 5.1.1 mailbox unavailable"
    row = read_row(project, no_retry)
    assert row.status == "failed" and row.attempts == 1 and row.max_retries == 0
    assert f"refused all recipients: {reply}" in row.log
    assert "MailDeliveryError" in row.log and "--- attempt 1 failed" in row.log

    row = read_row(project, fast_retries)
    assert row.status == "failed" and row.attempts == 3 and row.max_retries == 2
    assert row.log.count(reply) == 3
    assert all(f"--- attempt {n} failed" in row.log for n in (1, 2, 3))

    # send-mail retries twice, a minute apart: after the first refusal the row waits
    row = read_row(project, default_policy)
    assert row.status == "scheduled" and row.attempts == 1 and row.max_retries == 2
    assert reply in row.log
    wait = row.scheduled_for.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)
    assert timedelta(seconds=30) < wait <= timedelta(seconds=61)  # rounded up to a whole second
    assert handler.envelopes == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--to", "a@example.com", "--subject", "Hi\r\nBcc: evil@example.com"), "line break"),
        (("--to", "a@example.com", "--subject", "Hi\nBcc: evil@example.com"), "line break"),
        (("--to", "a@example.com\r\nBcc: evil@example.com", "--subject", "Hi"), "line break"),
        (("--to", "a@example.com, evil@example.com", "--subject", "Hi"), "invalid recipient"),
        (("--to", "a@example.com", "--subject", "Hi", "--template", "../../../etc/passwd"), "'..'"),
        (("--to", "a@example.com", "--subject", "Hi", "--template", "email/../../secrets"), "'..'"),
        (("--to", "a@example.com", "--subject", "Hi", "--template", "/etc/passwd"), "absolute path"),
        (("--to", "a@example.com", "--subject", "Hi", "--attach", "no/such/file.pdf"), "attachment"),
        (("--to", "a@example.com", "--subject", "Hi", "--var", "name"), "key=value"),
    ],
)
def test_bad_input_is_refused_before_any_row(
    project: Project, smtp_server: StartServer, args: tuple[str, ...], needle: str
) -> None:
    handler = Collector()
    smtp_config(project, smtp_server(handler))
    result = project.rqjobs("enqueue", "send-mail", "--description", "attack", *args)
    assert_refused(result, needle)
    assert result.stdout == ""
    assert row_count(project) == 0
    assert redis_job_keys(project) == []

    # the next good task gets id 1: no row was written and deleted either (ids are never reused)
    from rqjobs.api import enqueue_task

    good = enqueue_task(
        "send-mail", to=["a@example.com"], subject="Hi", description="good", runtime=project.runtime()
    )
    assert good.id == 1 and row_count(project) == 1
