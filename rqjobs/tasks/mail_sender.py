"""The built-in ``send-mail`` task: render a Jinja2 template pair and deliver it.

A template name such as ``email/welcome`` stands for two files, ``email/welcome.txt``
(plain text, not escaped) and ``email/welcome.html`` (autoescaped); either may be
missing but not both. They are looked up in the user's ``templates_dir`` first and
then in the templates shipped with rqjobs; the first folder that has either file
provides the template, so a user's override is never mixed with half of a
built-in one.

Delivery is either SMTP (plain, STARTTLS or SSL, with optional login) or the file
outbox (the default): one ``.eml`` file per message, so the embedded demo works
with no mail server at all.

Everything heavy (jinja2, smtplib, ssl, the email package) is imported inside the
functions: the CLI imports this module to build ``rqjobs enqueue send-mail`` and
``rqjobs --help`` must stay fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rqjobs.config import current_settings
from rqjobs.exceptions import ConfigError, InvalidTaskArguments, MailDeliveryError
from rqjobs.tasks.commons import background_task, set_task_progress

if TYPE_CHECKING:  # pragma: no cover
    from email.message import EmailMessage

    from jinja2 import Environment

    from rqjobs.config import MailSettings, Settings

#: the templates shipped with rqjobs; the user's ``templates_dir`` is searched first
PACKAGE_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_TEMPLATE = "email/welcome"
TEMPLATE_SUFFIXES = (".txt", ".html")

#: how often a failed delivery is tried again, and how long to wait in between: most
#: SMTP failures worth retrying are a busy or restarting server (4xx, connection refused)
SEND_MAIL_RETRIES = 2
SEND_MAIL_RETRY_INTERVAL_S = 60

# An addr-spec we are willing to put in a header and an RCPT command: ASCII dot-atom
# local part (no SMTPUTF8) at a host name. Deliberately stricter than RFC 5322, which
# also allows quoted local parts and address literals nobody types on a command line.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC_RE = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")
_VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --------------------------------------------------------------------------- checks


def _as_list(value: object, what: str) -> list[str]:
    """Accept a list of strings (the CLI's repeated option) or one string (a Python caller)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return items
    raise InvalidTaskArguments(f"{what} must be a list of strings, got {value!r}")


def _reject_newlines(value: str, what: str) -> None:
    """A CR or LF in a header value would let the caller add headers of their own."""
    if "\r" in value or "\n" in value:
        raise InvalidTaskArguments(f"{what} must not contain a line break: {value!r}")


def parse_address(value: str, what: str = "address") -> tuple[str, str]:
    """Split ``"Ann <ann@example.com>"`` or ``"ann@example.com"`` into (display name, addr-spec).

    Refuses line breaks (header injection), lists (``a@x, b@y`` is two options, not one)
    and anything that is not a plain ASCII address.
    """
    _reject_newlines(value, what)
    text = value.strip()
    name, addr = "", text
    if text.endswith(">") and "<" in text:
        cut = text.rindex("<")
        name, addr = text[:cut].strip(), text[cut + 1 : -1].strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        if any(c in name for c in '<>"\\'):
            raise InvalidTaskArguments(f"invalid {what}: {value!r}")
    if not _ADDR_SPEC_RE.fullmatch(addr) or len(addr) > 254:
        raise InvalidTaskArguments(f"invalid {what}: {value!r} (expected name@example.com)")
    return name, addr


def check_template_name(name: object) -> str:
    """Refuse template names that could leave the template folders.

    jinja2's loader refuses ``..`` too; checking here gives a clear message before any
    row is written, and does not depend on the loader's implementation.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidTaskArguments("template must be a non-empty name such as 'email/welcome'")
    if "\x00" in name or "\\" in name or "\r" in name or "\n" in name:
        raise InvalidTaskArguments(f"invalid template name: {name!r}")
    if name.startswith("/") or os.path.isabs(name) or re.match(r"[A-Za-z]:", name):
        raise InvalidTaskArguments(
            f"template {name!r} must be a name relative to the template folders, not an absolute path"
        )
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InvalidTaskArguments(f"template {name!r} must not contain '..', '.' or empty path segments")
    return name


def template_dirs(settings: Settings) -> list[Path]:
    """The template search path: the user's folder first, so it can override built-ins."""
    dirs = [PACKAGE_TEMPLATES_DIR]
    if settings.templates_dir is not None:
        dirs.insert(0, Path(settings.templates_dir))
    return dirs


def find_template_parts(name: str, dirs: list[Path]) -> list[str]:
    """The file names (``name.txt`` and/or ``name.html``) of the first folder that has either.

    Raises InvalidTaskArguments naming the folders searched when neither exists anywhere.
    """
    check_template_name(name)
    for folder in dirs:
        parts = [name + suffix for suffix in TEMPLATE_SUFFIXES if (folder / (name + suffix)).is_file()]
        if parts:
            return parts
    hint = ""
    if name.endswith(TEMPLATE_SUFFIXES):
        hint = " (give the name without .txt/.html)"
    searched = ", ".join(str(d) for d in dirs)
    raise InvalidTaskArguments(
        f"template {name!r} not found: no {name}.txt or {name}.html in {searched}{hint}"
    )


def parse_vars(var: object) -> dict[str, str]:
    """``["name=Ann", "team=R&D"]`` -> ``{"name": "Ann", "team": "R&D"}``; the first '=' splits."""
    values: dict[str, str] = {}
    for item in _as_list(var, "var"):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _VAR_NAME_RE.fullmatch(key):
            raise InvalidTaskArguments(
                f"--var must be key=value with key a name like first_name, got {item!r}"
            )
        if key in values:
            raise InvalidTaskArguments(f"--var {key} is given more than once")
        values[key] = value
    return values


def _check_attachments(attach: object) -> list[Path]:
    paths = []
    for item in _as_list(attach, "attach"):
        path = Path(item).expanduser()
        if not path.is_file():
            raise InvalidTaskArguments(f"attachment not found (or not a file): {item}")
        if not os.access(path, os.R_OK):
            raise InvalidTaskArguments(f"attachment is not readable: {item}")
        paths.append(path)
    return paths


def _sender(mail: MailSettings) -> tuple[str, str]:
    try:
        return parse_address(mail.sender, "sender")
    except InvalidTaskArguments as exc:
        raise ConfigError(f"mail.sender: {exc.message}") from None


# ------------------------------------------------------------------------ rendering


def _environment(settings: Settings) -> Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(settings)]),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml"), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_template(
    name: str, context: Mapping[str, Any], settings: Settings
) -> tuple[str | None, str | None]:
    """Render ``name``'s text and HTML parts; (text, html), either None when that file is absent.

    Template errors (an undefined variable, a syntax error) become InvalidTaskArguments
    with the template's own message, so validate() can refuse them before enqueuing.
    """
    import jinja2

    parts = find_template_parts(name, template_dirs(settings))
    env = _environment(settings)
    rendered: dict[str, str] = {}
    for part in parts:
        try:
            rendered[part] = env.get_template(part).render(**context)
        except jinja2.UndefinedError as exc:
            raise InvalidTaskArguments(
                f"template {part}: {exc.message} (pass it with --var KEY=VALUE)"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise InvalidTaskArguments(
                f"template {exc.filename or part}, line {exc.lineno}: {exc.message}"
            ) from None
        except jinja2.TemplateError as exc:
            raise InvalidTaskArguments(f"template {part}: {exc}") from None
    return rendered.get(name + ".txt"), rendered.get(name + ".html")


def _context(subject: str, variables: Mapping[str, str]) -> dict[str, Any]:
    """What a template sees: ``subject`` (e.g. for an HTML <title>) and the --var values."""
    return {"subject": subject, **variables}


# -------------------------------------------------------------------------- validate


def validate_send_mail(kwargs: dict[str, object]) -> dict[str, object]:
    """Refuse bad input in the enqueuing process, before a row exists (the CLI exits 2).

    Also renders the template once with the given variables, so a missing variable
    or a template syntax error is reported now and not as a failed row later.
    Returns the arguments with each attachment as an absolute path: checked here,
    relative to the enqueuer's working directory, it is read by a worker that may run
    in another.
    """
    to = _as_list(kwargs.get("to"), "to")
    if not to:
        raise InvalidTaskArguments("at least one recipient (--to) is required")
    for address in to:
        parse_address(address, "recipient address")
    subject = kwargs.get("subject")
    if not isinstance(subject, str):
        raise InvalidTaskArguments("subject must be a string")
    _reject_newlines(subject, "subject")
    template = check_template_name(kwargs.get("template", DEFAULT_TEMPLATE))
    variables = parse_vars(kwargs.get("var"))
    attachments = _check_attachments(kwargs.get("attach"))
    settings = current_settings()
    _sender(settings.mail)
    render_template(template, _context(subject, variables), settings)
    if kwargs.get("attach") is None:
        return dict(kwargs)
    # abspath, not resolve(): a symlink keeps its own name as the attachment's file name
    return {**kwargs, "attach": [os.path.abspath(p) for p in attachments]}


# --------------------------------------------------------------------------- message


def build_message(
    *,
    sender: tuple[str, str],
    recipients: list[tuple[str, str]],
    subject: str,
    text: str | None,
    html: str | None,
    attachments: list[Path],
) -> EmailMessage:
    """A complete RFC 5322 message (CRLF line ends, policy SMTP) with a fresh Message-ID."""
    import mimetypes
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.policy import SMTP
    from email.utils import formatdate, make_msgid

    def address(pair: tuple[str, str]) -> Address:
        return Address(display_name=pair[0], addr_spec=pair[1])

    msg = EmailMessage(policy=SMTP)
    msg["From"] = address(sender)
    msg["To"] = [address(r) for r in recipients]
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    # the sender's domain, not socket.getfqdn(): no DNS lookup, and a stable right-hand side
    msg["Message-ID"] = make_msgid(domain=sender[1].rpartition("@")[2])
    if text is not None:
        msg.set_content(text, subtype="plain", charset="utf-8")
        if html is not None:
            msg.add_alternative(html, subtype="html", charset="utf-8")
    else:
        assert html is not None
        msg.set_content(html, subtype="html", charset="utf-8")
    for path in attachments:
        ctype, encoding = mimetypes.guess_type(path.name)
        # a compressed file (x.tar.gz) is not of its inner type; message/* and multipart/*
        # cannot be attached as base64 bytes
        if ctype is None or encoding is not None or ctype.split("/")[0] in ("message", "multipart"):
            ctype = "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    return msg


# -------------------------------------------------------------------------- delivery


def _reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _delivery_error(exc: BaseException, where: str, username: str | None) -> MailDeliveryError:
    """Turn an smtplib/socket error into one message with the server's code and reply."""
    import smtplib
    import ssl

    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        detail = "; ".join(
            f"{rcpt}: {code} {_reply_text(reply)}" for rcpt, (code, reply) in exc.recipients.items()
        )
        return MailDeliveryError(f"{where} refused all recipients: {detail}")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return MailDeliveryError(
            f"{where} refused sender {exc.sender}: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return MailDeliveryError(
            f"{where} rejected the login of user {username!r}: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPDataError):
        return MailDeliveryError(
            f"{where} refused the message: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return MailDeliveryError(f"{where} replied {exc.smtp_code} {_reply_text(exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return MailDeliveryError(f"{where} closed the connection: {exc}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return MailDeliveryError(f"{where}: {exc}")
    if isinstance(exc, ssl.SSLError):
        return MailDeliveryError(f"TLS with {where} failed: {exc}")
    if isinstance(exc, TimeoutError):
        return MailDeliveryError(f"{where} did not answer in time: {exc}")
    if isinstance(exc, OSError):
        return MailDeliveryError(f"cannot talk to {where}: {exc.strerror or exc}")
    return MailDeliveryError(f"{where}: {exc}")


def deliver_smtp(msg: EmailMessage, mail: MailSettings, sender: str, recipients: list[str]) -> dict[str, str]:
    """Send ``msg`` over SMTP; returns the recipients the server refused (if only some were).

    A refusal of *some* recipients is not an error: the others already have the
    message, and raising would make a retry send it to them twice.
    """
    import smtplib
    import ssl

    where = f"SMTP server {mail.host}:{mail.port}"
    try:
        smtp: smtplib.SMTP
        if mail.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                mail.host, mail.port, timeout=mail.timeout_s, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(mail.host, mail.port, timeout=mail.timeout_s)
        with smtp:
            if mail.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if mail.username:
                smtp.login(mail.username, mail.password or "")
            refused = smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as exc:
        raise _delivery_error(exc, where, mail.username) from exc
    return {rcpt: f"{code} {_reply_text(reply)}" for rcpt, (code, reply) in refused.items()}


def write_outbox(msg: EmailMessage, outbox_dir: Path) -> Path:
    """Write ``msg`` as ``<UTC timestamp>-<message id>.eml``, atomically (tmp file, then rename).

    A reader polling the folder never sees half a message: the temporary name starts
    with a dot and does not end in ``.eml``.
    """
    import time

    outbox_dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    stamp = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{int(now % 1 * 1_000_000):06d}Z"
    ident = re.sub(r"[^A-Za-z0-9._-]", "_", str(msg["Message-ID"]).strip("<> "))[:80]
    final = outbox_dir / f"{stamp}-{ident}.eml"
    tmp = outbox_dir / f".{final.name}.tmp"
    data = msg.as_bytes()
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


# ------------------------------------------------------------------------------ task


@background_task(
    name="send-mail",
    validate=validate_send_mail,
    retries=SEND_MAIL_RETRIES,
    retry_interval_s=SEND_MAIL_RETRY_INTERVAL_S,
)
def send_mail(
    to: list[str],
    subject: str,
    template: str = DEFAULT_TEMPLATE,
    var: list[str] | None = None,
    attach: list[str] | None = None,
) -> dict:
    """Render TEMPLATE (.txt and/or .html) with --var KEY=VALUE and mail it to every --to.

    Example: rqjobs enqueue send-mail --description "welcome Ann" --to ann@example.com
    --subject "Welcome!" --var name=Ann --attach guide.pdf
    """
    settings = current_settings()
    # the same checks as validate_send_mail: a job may reach us without going through it
    recipients = [parse_address(a, "recipient address") for a in _as_list(to, "to")]
    if not recipients:
        raise InvalidTaskArguments("at least one recipient (--to) is required")
    _reject_newlines(subject, "subject")
    variables = parse_vars(var)
    attachments = _check_attachments(attach)
    sender = _sender(settings.mail)

    set_task_progress(10, "rendering")
    text, html = render_template(check_template_name(template), _context(subject, variables), settings)
    msg = build_message(
        sender=sender,
        recipients=recipients,
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
    )
    message_id = str(msg["Message-ID"])
    addrs = [addr for _, addr in recipients]

    set_task_progress(50, "delivering")
    result: dict[str, Any] = {"message_id": message_id, "backend": settings.mail.backend}
    if settings.mail.backend == "smtp":
        refused = deliver_smtp(msg, settings.mail, sender[1], addrs)
        result["recipients"] = [a for a in addrs if a not in refused]
        if refused:
            result["refused"] = refused
    else:
        result["recipients"] = addrs
        result["path"] = str(write_outbox(msg, settings.outbox_dir))
    set_task_progress(90, "sent")
    return result
