"""User- and job-supplied text, shown literally: no rich markup, control characters escaped.

Descriptions, arguments, results, logs, progress messages and names read from Redis
come from whoever could enqueue a job. Passed to rich as a string, ``[/var/log]``
would be markup (an error, or a link); written to a terminal, ``ESC ] 0 ; ... BEL``
would retitle it and ``ESC [ 2 J`` clear it. Every such string goes through
:func:`visible` (pipes) or :func:`literal` (rich) on its way out.
"""

from __future__ import annotations

import re

from rich.text import Text

#: C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_MULTILINE_KEEP = {"\n", "\t"}


def _escape(char: str) -> str:
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if char in named:
        return named[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object, *, multiline: bool = False) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\u2028``).

    ``multiline`` keeps newlines and tabs (a log, a traceback); otherwise the text stays
    on one line, its newlines shown as ``\\n``.
    """
    value = "" if text is None else str(text)
    if multiline:
        return _CONTROL.sub(
            lambda m: m.group() if m.group() in _MULTILINE_KEEP else _escape(m.group()), value
        )
    return _CONTROL.sub(lambda m: _escape(m.group()), value)


def literal(text: object, style: str = "", *, multiline: bool = False) -> Text:
    """A rich ``Text`` of ``text`` shown as it is (never parsed as markup), controls escaped."""
    return Text(visible(text, multiline=multiline), style=style)
