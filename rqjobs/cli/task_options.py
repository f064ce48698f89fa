"""How a task's parameters become the options of ``rqjobs enqueue TASK``.

Each parameter gets an option named after it (``--param-NAME`` when the name is one of
rqjobs' own options, so ``delay`` or ``queue`` stay reachable and break nothing), a type
Typer parses (Enum and Literal as choices, bool as ``--x/--no-x``, Path, datetime and
lists), and the help its docstring gives it in the Google, NumPy or Sphinx style.
"""

from __future__ import annotations

import enum
import inspect
import re
import shlex
import typing
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rqjobs.cli._click import CompletionItem, ParamType
from rqjobs.tasks.arguments import type_hints, unwrap_optional
from rqjobs.tasks.registry import RESERVED_PARAMETERS

if TYPE_CHECKING:
    from rqjobs.tasks.commons import TaskSpec

_SIMPLE = (str, int, float, bool, Path, datetime)
_ITEMS = (str, int, float, Path, datetime)
#: the options every `enqueue TASK` command has (besides the 18 reserved parameter names)
OWN_OPTIONS = frozenset({"description", "queue", "timeout", "retries", "retry-interval", "at", "in"})
OWN_OPTIONS |= {"kwargs", "dry-run", "json", "help", "unique-key", "from-jsonl"}

_SPHINX = re.compile(r"^:param\s+(?:[\w\[\], .|]+\s+)?(\w+)\s*:\s*(.*)$")
_GOOGLE_HEAD = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):\s*$")
_OTHER_SECTION = re.compile(r"^(Returns?|Yields?|Raises|Notes?|Examples|See Also|Warns|Attributes):\s*$")
_GOOGLE_ITEM = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ITEM = re.compile(r"^(\w+)\s*(?::.*)?$")


def _is_rule(line: str) -> bool:
    return len(line) >= 3 and set(line) == {"-"}


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str], list[str]]:
    """(description, help by parameter, examples) from a Google, NumPy or Sphinx docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    described: list[str] = []
    params: dict[str, str] = {}
    examples: list[str] = []
    mode: str | None = None
    current: str | None = None
    indent0: int | None = None
    for i, raw in enumerate(lines):
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.startswith("Example:") or (mode == "example" and line):
            text = line.removeprefix("Example:").strip()
            if mode == "example" and not line.startswith("Example:"):
                examples[-1] = f"{examples[-1]} {text}".strip()
            else:
                examples.append(text)
            mode = "example"
            continue
        sphinx = _SPHINX.match(line)
        if sphinx:
            mode, current = "sphinx", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            continue
        if _GOOGLE_HEAD.match(line):
            mode, current, indent0 = "google", None, None
            continue
        if line in ("Parameters", "Other Parameters") and _is_rule(nxt):
            mode, current, indent0 = "numpy-rule", None, None
            continue
        if mode == "numpy-rule":
            mode = "numpy"
            continue
        if _is_rule(nxt) or _OTHER_SECTION.match(line):  # Returns, Raises...: not for the help
            mode = "skip"
            continue
        if mode == "skip":
            continue
        if not line:
            if mode in ("sphinx", "example"):
                mode = None
            continue
        if mode == "google":
            indent0 = indent if indent0 is None else indent0
            if indent == indent0 and indent > 0 and (item := _GOOGLE_ITEM.match(line)):
                current = item.group(1)
                params[current] = item.group(2).strip()
                continue
            if indent > (indent0 or 0) and current:
                params[current] = f"{params[current]} {line}".strip()
                continue
            mode = None
        elif mode == "numpy":
            indent0 = indent if indent0 is None else indent0
            if indent == indent0 and (item := _NUMPY_ITEM.match(line)):
                current = item.group(1)
                params[current] = ""
                continue
            if indent > indent0 and current:
                params[current] = f"{params[current]} {line}".strip()
                continue
            mode = None
        elif mode == "sphinx":
            if indent > 0 and current:
                params[current] = f"{params[current]} {line}".strip()
                continue
            mode = None
        if mode is None and not line.startswith(":"):
            described.append(raw)
    return "\n".join(described).strip(), params, examples


class IsoDateTime(ParamType):  # type: ignore[misc]
    """A datetime in any ISO 8601 form Python reads (``2030-01-01T09:00``, with an offset...)."""

    name = "datetime"

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "<ISO 8601>"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2030-01-31T09:00", param, ctx)


class Choices(ParamType):  # type: ignore[misc]
    """One of an Enum's or a Literal's values, checked and completed by the shell.

    (Typer's vendored click has no ``Choice``: Typer builds one only for an Enum.)
    """

    name = "choice"

    def __init__(self, choices: list[Any]) -> None:
        self.choices = [str(c) for c in choices]

    def get_metavar(self, param: Any, ctx: Any = None) -> str:
        return "[" + "|".join(self.choices) + "]"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if str(value) in self.choices:
            return str(value)
        self.fail(f"{value!r} is not one of {', '.join(self.choices)}", param, ctx)

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> list[Any]:
        return [CompletionItem(c) for c in self.choices if c.startswith(incomplete)]


def option_name(param: str) -> str:
    """``--top``, or ``--param-delay`` for a name rqjobs' own options already use."""
    flag = param.replace("_", "-")
    if param in RESERVED_PARAMETERS or flag in OWN_OPTIONS:
        return f"--param-{flag}"
    return f"--{flag}"


def choices_of(hint: Any) -> list[Any] | None:
    """The allowed values of an Enum or Literal annotation (Enum: their values), else None."""
    hint = unwrap_optional(hint)
    if typing.get_origin(hint) is typing.Literal:
        return list(typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return [member.value for member in hint]
    return None


def cli_type(hint: Any) -> Any | None:
    """What Typer parses the option as (choices are str), or None if only --kwargs can give it."""
    hint = unwrap_optional(hint)
    if choices_of(hint) is not None:
        return str
    if hint in _SIMPLE:
        return hint
    origin = typing.get_origin(hint)
    if origin in (list, tuple, typing.Sequence, set) or hint is list:
        args = typing.get_args(hint)
        item = unwrap_optional(args[0]) if args else str
        if item in _ITEMS:
            return list[item]  # type: ignore[valid-type]
        if choices_of(item) is not None:
            return list[str]
    return None


def type_name(hint: Any) -> str:
    hint = unwrap_optional(hint)
    choices = choices_of(hint)
    if choices is not None:
        return " | ".join(str(c) for c in choices)
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "").replace("datetime.", "").replace("pathlib.", "")


def task_parameters(spec: TaskSpec) -> list[dict[str, Any]]:
    """Each parameter: name, option, CLI type (None: --kwargs only), choices, default, help."""
    hints = type_hints(spec.func)
    _, helps, _ = parse_docstring(inspect.getdoc(spec.func))
    out = []
    for param in spec.signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        hint = hints.get(param.name, str if param.annotation is inspect.Parameter.empty else Any)
        item_hint = (typing.get_args(unwrap_optional(hint)) or (None,))[0]
        choices = choices_of(hint) or (choices_of(item_hint) if item_hint is not None else None)
        required = param.default is inspect.Parameter.empty
        default = None if required else param.default
        out.append(
            {
                "name": param.name,
                "option": option_name(param.name),
                "cli_type": cli_type(hint),
                "type": type_name(hint),
                "choices": choices,
                "default": default.value if isinstance(default, enum.Enum) else default,
                "required": required,
                "help": helps.get(param.name, ""),
            }
        )
    return out


_EXAMPLE_VALUES = {int: "1", float: "1.5", str: '"text"', Path: "file.txt", datetime: "2030-01-01T09:00"}


def example_for(spec: TaskSpec, params: list[dict[str, Any]]) -> str:
    """The docstring's ``Example:`` line, else one made from the required parameters."""
    _, _, examples = parse_docstring(inspect.getdoc(spec.func))
    if examples:
        return examples[0]
    # a summary may hold quotes or a `$`: quoted for the shell, so the example runs as shown
    summary = spec.summary or spec.name
    described = f'"{summary}"' if not re.search(r'["$`\\!]', summary) else shlex.quote(summary)
    parts = ["rqjobs enqueue", spec.name, f"--description {described}"]
    for p in params:
        kind = p["cli_type"]
        if not p["required"] or kind is None or kind is bool:
            continue
        item = (typing.get_args(kind) or (kind,))[0]
        value = str(p["choices"][0]) if p["choices"] else _EXAMPLE_VALUES.get(item, '"text"')
        parts.append(f"{p['option']} {value}")
    return " ".join(parts)
