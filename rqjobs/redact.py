"""Passwords out of everything rqjobs writes: messages, row logs, tracebacks, worker logs.

A URL carries a password as userinfo (``redis://:pw@host``), as a query parameter
(``?password=pw``), or, unencoded, with characters that break parsing (``#``, ``/``,
``@``), after which no parser finds it again. So besides masking URLs by pattern, the
passwords of the configured URLs are remembered (:func:`remember_url`) and replaced
wherever they appear: in redis-py's "Port could not be cast" message, a traceback's
locals, a reconnect warning.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

_known: set[str] = set()

#: scheme://user:password@ : the password runs to the last '@' before the path
_USERINFO = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s]*?)(?=@[^\s@]*(?:\s|$))"
)
_USERINFO_SIMPLE = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?=@)")
#: ?password=... or &password=... (also passwd, pwd, secret, token)
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|secret|token)=)(?P<secret>[^&\s'\"]*)", re.I)


def userinfo_password(url: str) -> str | None:
    """The password in ``url``'s userinfo, found without a URL parser (which an unencoded
    '#' or '/' would mislead): between the first ':' after '//' and the last '@'."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    userinfo = rest.rsplit("@", 1)[0]
    user, colon, password = userinfo.partition(":")
    return password if colon and password else None


def query_passwords(url: str) -> list[str]:
    return [m.group("secret") for m in _QUERY.finditer(url) if m.group("secret")]


def remember_url(url: str | None) -> None:
    """Note the passwords ``url`` carries, so :func:`redact` hides them anywhere."""
    if not url:
        return
    from urllib.parse import unquote

    for secret in [userinfo_password(url), *query_passwords(url)]:
        if secret and len(secret) >= 3:
            _known.add(secret)
            _known.add(unquote(secret))


def remember_secret(secret: str) -> None:
    """Note a password given outside a URL (the SMTP password), so :func:`redact` hides it."""
    if len(secret) >= 3:
        _known.add(secret)


def redact(text: str) -> str:
    """``text`` with every password (known or in a URL) replaced by ``***``."""
    if not text:
        return text
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    text = _USERINFO_SIMPLE.sub(lambda m: m.group("head") + MASK, text)
    return _QUERY.sub(lambda m: m.group("head") + MASK, text)


def mask_url(url: str) -> str:
    """A URL safe to show: its passwords replaced by ``***``, whatever its shape."""
    remember_url(url)
    return redact(url)


_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record this process makes (the worker's and RQ's logs), once.

    A record factory rather than a handler filter: RQ adds its own handlers when its
    worker starts, and records propagate past loggers' filters.
    """
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    make_record = logging.getLogRecordFactory()

    def redacting_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)  # type: ignore[arg-type]
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it as usual
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return record

    logging.setLogRecordFactory(redacting_record)
