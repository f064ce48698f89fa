"""``rqjobs enqueue TASK``: one subcommand per registered task, built from its signature.

The command prints the new task's id alone on stdout (scripts capture it) and a note
on stderr.

The subcommands are built only when ``enqueue`` is invoked (the task modules must be
imported for that), so ``rqjobs --help`` stays fast. Typer reads a command's
parameters from ``inspect.signature`` and ``typing.get_type_hints``, so each generated
callback gets both ``__signature__`` and ``__annotations__``.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from rqjobs.cli._click import Command, Context, UsageError
from rqjobs.cli.context import GROUP_SETTINGS, info, load_tasks, runtime_from
from rqjobs.exceptions import InvalidTaskArguments, RqjobsError

if TYPE_CHECKING:
    from rqjobs.tasks.commons import TaskSpec

_SIMPLE = (str, int, float, bool, Path)
_PREFIX = "task__"


def _unwrap_optional(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return hint


def _cli_type(hint: Any) -> Any | None:
    """The type Typer should parse a task parameter as, or None if only --kwargs can give it."""
    hint = _unwrap_optional(hint)
    if hint in _SIMPLE:
        return hint
    origin = typing.get_origin(hint)
    if origin in (list, tuple, typing.Sequence, set) or hint in (list,):
        args = typing.get_args(hint)
        item = args[0] if args else str
        if item in (str, int, float, Path):
            return list[item]  # type: ignore[valid-type]
    return None


def task_parameters(spec: TaskSpec) -> list[dict[str, Any]]:
    """Each task parameter: name, CLI type (None: --kwargs only), default, required."""
    try:
        hints = typing.get_type_hints(spec.func)
    except Exception:
        hints = {}
    out = []
    for param in spec.signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        hint = hints.get(param.name, str if param.annotation is inspect.Parameter.empty else Any)
        required = param.default is inspect.Parameter.empty
        out.append(
            {
                "name": param.name,
                "option": "--" + param.name.replace("_", "-"),
                "cli_type": _cli_type(hint),
                "type": _type_name(hint),
                "default": None if required else param.default,
                "required": required,
            }
        )
    return out


def _type_name(hint: Any) -> str:
    hint = _unwrap_optional(hint)
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "")


def _given_on_command_line(ctx: Context, name: str) -> bool:
    """Did the user give this option (rather than Typer filling in its default)?"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _parse_intervals(text: str | None) -> int | list[int] | None:
    if text is None:
        return None
    from rqjobs.timeparse import parse_duration_s

    parts = [p for p in text.replace(" ", "").split(",") if p]
    if not parts:
        raise InvalidTaskArguments("--retry-interval needs seconds, e.g. 10 or 10,30,60")
    values = [int(parse_duration_s(p)) for p in parts]
    return values[0] if len(values) == 1 else values


def build_command(spec: TaskSpec, run: typing.Callable[..., None]) -> Command:
    """The click command for ``rqjobs enqueue <spec.name>``; it calls ``run(spec, ...)``."""
    params: list[inspect.Parameter] = []
    annotations: dict[str, Any] = {}

    def add(name: str, annotation: Any, default: Any) -> None:
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
        annotations[name] = annotation

    task_params = task_parameters(spec)
    for p in task_params:
        if p["cli_type"] is None:
            continue
        cli_type = p["cli_type"]
        is_list = typing.get_origin(cli_type) is list
        is_bool = cli_type is bool
        decl = [f"{p['option']}/--no-{p['option'][2:]}"] if is_bool else [p["option"]]
        help_text = f"{p['type']}" + (" (repeat for several)" if is_list else "")
        if p["required"]:
            # not required by click: --kwargs may supply it; binding reports it if missing
            default: Any = None
            help_text += " (required)"
        elif is_list:
            default = None
        else:
            default = p["default"]
        add(
            _PREFIX + p["name"],
            Annotated[cli_type | None if default is None else cli_type, typer.Option(*decl, help=help_text)],
            default,
        )

    add(
        "description",
        Annotated[str, typer.Option("--description", "-d", help="What this task is for (required).")],
        ...,
    )
    add(
        "queue",
        Annotated[str | None, typer.Option(help="Queue to put the job in.", rich_help_panel="Job")],
        None,
    )
    add(
        "timeout",
        Annotated[
            str | None, typer.Option(help="Time limit per attempt: 90, 30s, 10m, 2h.", rich_help_panel="Job")
        ],
        None,
    )
    add(
        "retries",
        Annotated[int | None, typer.Option(help="Retries after a failure.", rich_help_panel="Job")],
        None,
    )
    add(
        "retry_interval",
        Annotated[
            str | None,
            typer.Option(help="Wait between retries: 10, 30s, or a list 10,60,300.", rich_help_panel="Job"),
        ],
        None,
    )
    add(
        "at",
        Annotated[
            str | None,
            typer.Option(help="Run at this time (ISO 8601; local if no offset).", rich_help_panel="Job"),
        ],
        None,
    )
    add(
        "in_",
        Annotated[
            str | None,
            typer.Option("--in", help="Run after this delay: 30s, 10m, 2h.", rich_help_panel="Job"),
        ],
        None,
    )
    add(
        "kwargs_json",
        Annotated[
            str | None,
            typer.Option("--kwargs", help="More task arguments as a JSON object.", rich_help_panel="Job"),
        ],
        None,
    )

    add("ctx", typer.Context, inspect.Parameter.empty)

    def callback(**values: Any) -> None:
        task_kwargs: dict[str, Any] = {}
        if values.get("kwargs_json"):
            try:
                extra = json.loads(values["kwargs_json"])
            except json.JSONDecodeError as exc:
                raise InvalidTaskArguments(f"--kwargs is not valid JSON: {exc}") from None
            if not isinstance(extra, dict):
                raise InvalidTaskArguments("--kwargs must be a JSON object")
            task_kwargs.update(extra)
        ctx = values["ctx"]
        for p in task_params:
            key = _PREFIX + p["name"]
            if key not in values:
                continue
            given = _given_on_command_line(ctx, key)
            if p["name"] in task_kwargs:
                if given:
                    raise InvalidTaskArguments(
                        f"{p['option']} and --kwargs both give {p['name']!r}: give it once"
                    )
                continue  # --kwargs gives it; the option only holds its default
            value = values[key]
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = [str(v) if isinstance(v, Path) else v for v in value] or None
            if value is not None:
                task_kwargs[p["name"]] = value
        run(
            values["ctx"],
            spec,
            task_kwargs,
            description=values["description"],
            queue=values["queue"],
            timeout=values["timeout"],
            retries=values["retries"],
            retry_interval=_parse_intervals(values["retry_interval"]),
            at=values["at"],
            in_=values["in_"],
        )

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = annotations
    callback.__doc__ = inspect.getdoc(spec.func) or spec.name
    example = _example(spec, task_params)
    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    app.command(name=spec.name, epilog=f"Example: {example}")(callback)
    return typer.main.get_command(app)


def _example(spec: TaskSpec, task_params: list[dict[str, Any]]) -> str:
    parts = ["rqjobs enqueue", spec.name, f'--description "{spec.summary or spec.name}"']
    for p in task_params:
        if p["required"] and p["cli_type"] is not None:
            parts.append(f"{p['option']} VALUE")
    return " ".join(parts)


class EnqueueGroup(TyperGroup):
    """A group whose subcommands are the registered tasks, loaded on first use."""

    def _specs(self, ctx: Context) -> dict[str, TaskSpec]:
        return load_tasks(ctx)

    def list_commands(self, ctx: Context) -> list[str]:
        try:
            return list(self._specs(ctx))
        except RqjobsError:
            if ctx.resilient_parsing:  # shell completion: never print an error into the prompt
                return []
            raise

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        spec = self._specs(ctx).get(cmd_name)
        if spec is None:
            return None
        return build_command(spec, run_enqueue)

    def resolve_command(self, ctx: Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            known = ", ".join(self.list_commands(ctx)) or "none"
            raise UsageError(f"{exc.format_message()} Registered tasks: {known}.", ctx) from None


enqueue_app = typer.Typer(
    cls=EnqueueGroup,
    help="Create a task row and enqueue its job; prints the new task id.",
    epilog='Example: rqjobs enqueue count-words --description "demo" --text "to be or not to be"',
    **GROUP_SETTINGS,
)


def run_enqueue(
    ctx: Context,
    spec: TaskSpec,
    task_kwargs: dict[str, Any],
    *,
    description: str,
    queue: str | None,
    timeout: str | None,
    retries: int | None,
    retry_interval: int | list[int] | None,
    at: str | None,
    in_: str | None,
) -> None:
    """Called by every generated ``enqueue TASK`` command: prints the id alone on stdout."""
    from rqjobs.api import enqueue_task
    from rqjobs.timeparse import parse_duration_s, parse_time

    when = parse_time(at) if at else None
    delay_s = parse_duration_s(in_) if in_ else None
    timeout_s = int(parse_duration_s(timeout)) if timeout else None
    record = enqueue_task(
        spec.name,
        description=description,
        queue=queue,
        timeout_s=timeout_s,
        retries=retries,
        retry_interval_s=retry_interval,
        at=when,
        delay_s=delay_s,
        runtime=runtime_from(ctx),
        **task_kwargs,
    )
    typer.echo(record.id)
    when_text = (
        f", scheduled for {record.scheduled_for.isoformat(timespec='seconds')}"
        if record.scheduled_for
        else ""
    )
    info(f"[dim]task {record.id} ({record.name}) {record.status} on queue {record.queue}{when_text}[/dim]")


__all__ = ["EnqueueGroup", "build_command", "enqueue_app", "run_enqueue", "task_parameters"]
