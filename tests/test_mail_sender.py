"""send-mail against a real SMTP server (aiosmtpd on 127.0.0.1) and the file outbox.

The task function is called directly: outside an RQ job ``background_task`` is a
pass-through, so these tests need neither Redis nor a database.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from rqjobs.config import Settings, load_settings, set_current_settings
from rqjobs.exceptions import ConfigError, InvalidTaskArguments
from rqjobs.tasks.mail_sender import (
    MailDeliveryError,
    parse_address,
    send_mail,
    validate_send_mail,
)
from tests.support.smtp import Collector, StartServer, free_port

UTF8_SUBJECT = "Grüße aus Köln ✓ – willkommen"


# ----------------------------------------------------------------------- fixtures


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> Iterator[MakeSettings]:
    """Write a tmp rqjobs.toml, load it (with an empty environment) and install it."""

    def make(
        mail: dict[str, object] | None = None, env: dict[str, str] | None = None, **top: object
    ) -> Settings:
        lines = [f"{key} = {_toml_value(value)}" for key, value in top.items()]
        lines.append("[mail]")
        mail = {"sender": "rqjobs tests <noreply@example.com>", **(mail or {})}
        lines += [f"{key} = {_toml_value(value)}" for key, value in mail.items()]
        path = tmp_path / "rqjobs.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        settings = load_settings(path, env=env or {})
        set_current_settings(settings)
        return settings

    yield make
    set_current_settings(None)


class RefuseRecipients(Collector):
    """Refuses recipients whose local part starts with ``prefix`` (all of them by default)."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith(self.prefix):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class RefuseData(Collector):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "554 5.7.1 message rejected as spam"


def smtp_mail(port: int, **extra: object) -> dict[str, object]:
    return {"backend": "smtp", "host": "127.0.0.1", "port": port, "timeout_s": 5, **extra}


# --------------------------------------------------------------------------- smtp


def test_smtp_delivers_headers_parts_and_attachments(
    tmp_path: Path, make_settings: MakeSettings, smtp_server: StartServer
) -> None:
    handler = Collector()
    port = smtp_server(handler)
    make_settings(mail=smtp_mail(port))
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 fake")
    utf8_name = tmp_path / "résumé.txt"
    utf8_name.write_text("plain attachment\n", encoding="utf-8")
    unknown = tmp_path / "blob.zzzunknown"
    unknown.write_bytes(b"\x00\x01")

    kwargs = {
        "to": ["Ann Example <ann@example.com>", "bob@example.org"],
        "subject": UTF8_SUBJECT,
        "template": "email/welcome",
        "var": ["name=<b>Ann</b>"],
        "attach": [str(pdf), str(utf8_name), str(unknown)],
    }
    validate_send_mail(kwargs)
    result = send_mail(**kwargs)

    assert result["backend"] == "smtp"
    assert result["recipients"] == ["ann@example.com", "bob@example.org"]
    assert "path" not in result and "refused" not in result
    [envelope] = handler.envelopes
    assert envelope.mail_from == "noreply@example.com"
    assert envelope.rcpt_tos == ["ann@example.com", "bob@example.org"]

    [msg] = handler.messages()
    assert msg["Subject"] == UTF8_SUBJECT
    assert msg["From"].addresses[0].addr_spec == "noreply@example.com"
    assert msg["From"].addresses[0].display_name == "rqjobs tests"
    assert [a.addr_spec for a in msg["To"].addresses] == ["ann@example.com", "bob@example.org"]
    assert msg["To"].addresses[0].display_name == "Ann Example"
    assert msg["Message-ID"] == result["message_id"]
    assert result["message_id"].endswith("@example.com>")
    assert msg["Date"]
    assert msg.get_content_type() == "multipart/mixed"

    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "Hello <b>Ann</b>," in text.get_content()  # the text part is not escaped
    html_content = html.get_content()
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html_content  # the html part is
    assert "<b>Ann</b>" not in html_content
    assert f"<title>{UTF8_SUBJECT}</title>" in html_content

    attachments = {part.get_filename(): part for part in msg.iter_attachments()}
    assert set(attachments) == {"report.pdf", "résumé.txt", "blob.zzzunknown"}
    assert attachments["report.pdf"].get_content_type() == "application/pdf"
    assert attachments["report.pdf"].get_content() == b"%PDF-1.4 fake"
    assert attachments["résumé.txt"].get_content_type() == "text/plain"
    assert attachments["blob.zzzunknown"].get_content_type() == "application/octet-stream"


def test_smtp_rcpt_refused_reports_code_and_reply(
    make_settings: MakeSettings, smtp_server: StartServer
) -> None:
    port = smtp_server(RefuseRecipients())
    make_settings(mail=smtp_mail(port))
    with pytest.raises(MailDeliveryError) as info:
        send_mail(to=["nobody@example.com"], subject="hi")
    message = str(info.value)
    assert "550" in message and "5.1.1 mailbox unavailable" in message
    assert "nobody@example.com" in message and f"127.0.0.1:{port}" in message


def test_smtp_data_refused_reports_code_and_reply(
    make_settings: MakeSettings, smtp_server: StartServer
) -> None:
    port = smtp_server(RefuseData())
    make_settings(mail=smtp_mail(port))
    with pytest.raises(MailDeliveryError, match=r"554 5\.7\.1 message rejected as spam"):
        send_mail(to=["ann@example.com"], subject="hi")


def test_smtp_partial_refusal_is_reported_not_raised(
    make_settings: MakeSettings, smtp_server: StartServer
) -> None:
    handler = RefuseRecipients(prefix="nobody@")
    port = smtp_server(handler)
    make_settings(mail=smtp_mail(port))
    result = send_mail(to=["ann@example.com", "nobody@example.com"], subject="hi")
    assert result["recipients"] == ["ann@example.com"]
    assert result["refused"] == {"nobody@example.com": "550 5.1.1 mailbox unavailable"}
    assert handler.envelopes[0].rcpt_tos == ["ann@example.com"]


def test_smtp_connection_refused_names_the_server(make_settings: MakeSettings) -> None:
    port = free_port()  # nothing listens there
    make_settings(mail=smtp_mail(port))
    with pytest.raises(MailDeliveryError, match=rf"cannot talk to SMTP server 127\.0\.0\.1:{port}"):
        send_mail(to=["ann@example.com"], subject="hi")


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"ann", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: the server sends the 535 itself


def test_smtp_login_with_password_from_env(make_settings: MakeSettings, smtp_server: StartServer) -> None:
    handler = Collector()
    port = smtp_server(handler, authenticator=_authenticator, auth_require_tls=False)
    make_settings(
        mail=smtp_mail(port, username="ann", password_env="TEST_SMTP_PASSWORD"),
        env={"TEST_SMTP_PASSWORD": "s3cret"},
    )
    send_mail(to=["bob@example.org"], subject="hi")
    assert len(handler.envelopes) == 1


def test_smtp_wrong_password_reports_535(make_settings: MakeSettings, smtp_server: StartServer) -> None:
    port = smtp_server(Collector(), authenticator=_authenticator, auth_require_tls=False)
    make_settings(mail=smtp_mail(port, username="ann"), env={"RQJOBS_MAIL_PASSWORD": "wrong"})
    with pytest.raises(MailDeliveryError, match=r"rejected the login of user 'ann': 535"):
        send_mail(to=["bob@example.org"], subject="hi")


@dataclass(frozen=True)
class Tls:
    """A throwaway CA (``trust``: what the client verifies against) and a server cert for 127.0.0.1."""

    trust: Path
    chain: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.chain)
        return context


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    tls = Tls(trust=folder / "ca.pem", chain=folder / "server.pem")
    ca.cert_pem.write_to_path(str(tls.trust))
    server.private_key_and_cert_chain_pem.write_to_path(str(tls.chain))
    return tls


def test_smtp_starttls_then_login(
    tls_cert: Tls,
    make_settings: MakeSettings,
    smtp_server: StartServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert.trust))  # the client verifies the server against it
    handler = Collector()
    # auth_require_tls (the default): the login only works after STARTTLS
    port = smtp_server(
        handler, tls_context=tls_cert.server_context(), require_starttls=True, authenticator=_authenticator
    )
    make_settings(
        mail=smtp_mail(port, security="starttls", username="ann"), env={"RQJOBS_MAIL_PASSWORD": "s3cret"}
    )
    send_mail(to=["bob@example.org"], subject="over tls")
    assert handler.messages()[0]["Subject"] == "over tls"


def test_smtp_ssl(
    tls_cert: Tls,
    make_settings: MakeSettings,
    smtp_server: StartServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert.trust))
    handler = Collector()
    port = smtp_server(handler, ssl_context=tls_cert.server_context())
    make_settings(mail=smtp_mail(port, security="ssl"))
    send_mail(to=["bob@example.org"], subject="implicit tls")
    assert len(handler.envelopes) == 1


def test_smtp_untrusted_certificate_fails_clearly(
    tls_cert: Tls,
    make_settings: MakeSettings,
    smtp_server: StartServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = tmp_path / "no-cas.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    port = smtp_server(Collector(), ssl_context=tls_cert.server_context())
    make_settings(mail=smtp_mail(port, security="ssl"))
    with pytest.raises(MailDeliveryError, match=r"TLS with SMTP server 127\.0\.0\.1:\d+ failed"):
        send_mail(to=["bob@example.org"], subject="hi")


# ------------------------------------------------------------------------- outbox


def test_outbox_is_the_default_and_writes_a_parseable_eml(
    tmp_path: Path, make_settings: MakeSettings
) -> None:
    settings = make_settings(data_dir=str(tmp_path / "data"))
    assert settings.mail.backend == "outbox"
    result = send_mail(to=["ann@example.com"], subject=UTF8_SUBJECT, var=["name=Ann"])

    path = Path(result["path"])
    assert result["backend"] == "outbox" and result["recipients"] == ["ann@example.com"]
    assert path.parent == tmp_path / "data" / "outbox" and path.suffix == ".eml"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == UTF8_SUBJECT
    assert msg["Message-ID"] == result["message_id"]
    assert msg["To"] == "ann@example.com"
    assert "Hello Ann," in msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert msg.get_body(preferencelist=("html",)) is not None


def test_outbox_dir_setting_and_default_name(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings(mail={"outbox_dir": str(tmp_path / "mails" / "out")})
    first = send_mail(to=["ann@example.com"], subject="one")
    second = send_mail(to=["ann@example.com"], subject="two")
    assert first["path"] != second["path"]
    assert sorted(p.name for p in (tmp_path / "mails" / "out").iterdir()) == sorted(
        Path(r["path"]).name for r in (first, second)
    )
    body = email.message_from_bytes(Path(first["path"]).read_bytes(), policy=email.policy.default)
    assert "Hello there," in body.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def test_user_templates_override_and_single_part(tmp_path: Path, make_settings: MakeSettings) -> None:
    templates = tmp_path / "templates"
    (templates / "email").mkdir(parents=True)
    # only an .html part: the package's welcome.txt must not be mixed in
    (templates / "email" / "welcome.html").write_text("<p>Hi {{ name }} &amp; co</p>", encoding="utf-8")
    (templates / "notice.txt").write_text("Notice for {{ who }}: {{ subject }}", encoding="utf-8")
    make_settings(templates_dir=str(templates))

    html_only = send_mail(to=["ann@example.com"], subject="s", var=["name=A&B"])
    msg = email.message_from_bytes(Path(html_only["path"]).read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "text/html"
    assert msg.get_content().strip() == "<p>Hi A&amp;B &amp; co</p>"

    text_only = send_mail(to=["ann@example.com"], subject="Up", template="notice", var=["who=<Ann>"])
    msg = email.message_from_bytes(Path(text_only["path"]).read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Notice for <Ann>: Up"


# ----------------------------------------------------------------------- validate


def _valid(**changes: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "to": ["ann@example.com"],
        "subject": "Welcome",
        "template": "email/welcome",
        "var": None,
        "attach": None,
    }
    kwargs.update(changes)
    return kwargs


def test_validate_accepts_good_input(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    attachment = tmp_path / "a.txt"
    attachment.write_text("x")
    validate_send_mail(
        _valid(to=["Ann <ann@example.com>", "b.o+b@mail.example.org"], attach=[str(attachment)])
    )
    validate_send_mail(_valid(var=["name=Ann", "empty=", "expr=a=b"], subject=UTF8_SUBJECT))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"subject": "hi\r\nBcc: evil@example.com"}, "subject must not contain a line break"),
        ({"subject": "hi\nthere"}, "subject must not contain a line break"),
        ({"to": ["ann@example.com\nBcc: evil@example.com"]}, "must not contain a line break"),
        ({"to": ["ann@example.com\r"]}, "must not contain a line break"),
        ({"to": ["not-an-address"]}, "invalid recipient address"),
        ({"to": ["ann@example.com, bob@example.com"]}, "invalid recipient address"),
        ({"to": ["Ann <ann@>"]}, "invalid recipient address"),
        ({"to": ["ann@exa mple.com"]}, "invalid recipient address"),
        ({"to": []}, "at least one recipient"),
        ({"template": "email/missing"}, "template 'email/missing' not found"),
        ({"template": "email/welcome.html"}, "without .txt/.html"),
        ({"template": "../../etc/passwd"}, "must not contain '..'"),
        ({"template": "email/../../../etc/passwd"}, "must not contain '..'"),
        ({"template": "/etc/passwd"}, "not an absolute path"),
        ({"template": "..\\..\\etc\\passwd"}, "invalid template name"),
        ({"template": ""}, "non-empty name"),
        ({"var": ["name"]}, "key=value"),
        ({"var": ["=Ann"]}, "key=value"),
        ({"var": ["first name=Ann"]}, "key=value"),
        ({"var": ["name=A", "name=B"]}, "more than once"),
        ({"attach": ["/nonexistent/file.pdf"]}, "outside the folders send-mail may attach from"),
    ],
)
def test_validate_refuses(make_settings: MakeSettings, changes: dict[str, object], match: str) -> None:
    make_settings()
    with pytest.raises(InvalidTaskArguments, match=match):
        validate_send_mail(_valid(**changes))


def test_validate_refuses_attachment_that_is_a_folder(tmp_path: Path, make_settings: MakeSettings) -> None:
    make_settings()
    with pytest.raises(InvalidTaskArguments, match="not a file"):
        validate_send_mail(_valid(attach=[str(tmp_path)]))


def test_validate_renders_the_template(tmp_path: Path, make_settings: MakeSettings) -> None:
    templates = tmp_path / "t"
    templates.mkdir()
    (templates / "needs.txt").write_text("Hi {{ who }}")
    (templates / "broken.html").write_text("{% if %}")
    make_settings(templates_dir=str(templates))
    with pytest.raises(InvalidTaskArguments, match=r"needs\.txt: 'who' is undefined \(pass it with --var"):
        validate_send_mail(_valid(template="needs"))
    validate_send_mail(_valid(template="needs", var=["who=Ann"]))
    with pytest.raises(InvalidTaskArguments, match=r"broken\.html, line 1"):
        validate_send_mail(_valid(template="broken"))


def test_validate_refuses_a_bad_sender_setting(make_settings: MakeSettings) -> None:
    make_settings(mail={"sender": "not an address"})
    with pytest.raises(ConfigError, match="mail.sender"):
        validate_send_mail(_valid())


def test_task_itself_refuses_header_injection(make_settings: MakeSettings, smtp_server: StartServer) -> None:
    handler = Collector()
    make_settings(mail=smtp_mail(smtp_server(handler)))
    with pytest.raises(InvalidTaskArguments, match="line break"):
        send_mail(to=["ann@example.com"], subject="x\r\nBcc: evil@example.com")
    with pytest.raises(InvalidTaskArguments, match="line break"):
        send_mail(to=["ann@example.com\nBcc: evil@example.com"], subject="x")
    with pytest.raises(InvalidTaskArguments, match="must not contain '..'"):
        send_mail(to=["ann@example.com"], subject="x", template="../../etc/passwd")
    assert handler.envelopes == []


def test_parse_address_forms() -> None:
    assert parse_address("ann@example.com") == ("", "ann@example.com")
    assert parse_address(" Ann Example <ann@example.com> ") == ("Ann Example", "ann@example.com")
    assert parse_address('"Example, Ann" <ann@example.com>') == ("Example, Ann", "ann@example.com")
    assert parse_address("Zoë <zoe@example.com>") == ("Zoë", "zoe@example.com")


def test_import_is_cheap() -> None:
    """The CLI imports task modules to build its commands: no jinja2/smtplib/PIL at import."""
    code = (
        "import sys, rqjobs.tasks.mail_sender, rqjobs.tasks.image_uploader\n"
        "heavy = [m for m in ('jinja2', 'smtplib', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env_with_repo_on_path())


def _env_with_repo_on_path() -> dict[str, str]:
    """The child must import this checkout's rqjobs whether or not it is pip-installed."""
    import os

    import rqjobs.config

    repo = str(Path(rqjobs.config.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
