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
import typing
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from rqjobs.cli._click import Command, Context, UsageError
from rqjobs.cli.context import GROUP_SETTINGS, echo_json, info, load_tasks, runtime_from
from rqjobs.exceptions import InvalidTaskArguments, RqjobsError

if TYPE_CHECKING:
    from rqjobs.tasks.commons import TaskSpec

_PREFIX = "task__"


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
    # imported here: task_options imports rqjobs.tasks, whose package imports every built-in
    # task (and their neighbours); `rqjobs --help` never needs them
    from rqjobs.cli.task_options import example_for, parse_docstring, task_parameters

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
        kind = p["cli_type"]
        is_list = typing.get_origin(kind) is list
        decl = [f"{p['option']}/--no-{p['option'][2:]}"] if kind is bool else [p["option"]]
        help_text = p["help"] or p["type"]
        if is_list:
            help_text += " (repeat for several)"
        if p["required"]:
            # not required by click: --kwargs may supply it; binding reports it if missing
            default: Any = None
            help_text += " (required)"
        elif is_list or p["choices"]:
            default = None if is_list or p["default"] is None else str(p["default"])
        else:
            default = p["default"]
        add(
            _PREFIX + p["name"],
            Annotated[kind | None if default is None else kind, typer.Option(*decl, help=help_text)],
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
        "after",
        Annotated[
            list[int] | None,
            typer.Option(
                "--after",
                metavar="ID",
                min=1,
                help="Run only after this task has finished (repeatable); deferred until then.",
                rich_help_panel="Job",
            ),
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

    add(
        "unique_key",
        Annotated[
            str | None,
            typer.Option(
                "--unique-key",
                help="Create nothing while a live task has this key; print that task's id instead.",
                rich_help_panel="Job",
            ),
        ],
        None,
    )
    add(
        "from_jsonl",
        Annotated[
            str | None,
            typer.Option(
                "--from-jsonl",
                metavar="FILE",
                help="One task per line: a JSON object of its arguments (- reads stdin). "
                "All are checked first; one bad line enqueues nothing.",
                rich_help_panel="Job",
            ),
        ],
        None,
    )
    add(
        "dry_run",
        Annotated[
            bool,
            typer.Option("--dry-run", help="Check and print what would be enqueued; write nothing."),
        ],
        False,
    )
    add("as_json", Annotated[bool, typer.Option("--json", help="With --dry-run: print JSON.")], False)
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
        if values.get("from_jsonl") is not None:
            extra_options = [
                p["option"] for p in task_params if _given_on_command_line(ctx, _PREFIX + p["name"])
            ]
            extra_options += [
                flag
                for flag, key in (("--kwargs", "kwargs_json"), ("--at", "at"), ("--in", "in_"))
                if values.get(key)
            ]
            if values.get("unique_key") is not None:
                extra_options.append("--unique-key")
            if extra_options:
                raise InvalidTaskArguments(
                    f"--from-jsonl takes every task's arguments from the file; drop {', '.join(extra_options)}"
                )
            from rqjobs.cli.enqueue_jsonl import run_enqueue_jsonl

            run_enqueue_jsonl(
                ctx,
                spec,
                values["from_jsonl"],
                description=values["description"],
                queue=values["queue"],
                timeout=values["timeout"],
                retries=values["retries"],
                retry_interval=_parse_intervals(values["retry_interval"]),
                dry_run=values["dry_run"],
                as_json=values["as_json"],
            )
            return
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
            value = _from_choice(values[key], p["choices"])
            if isinstance(value, list):
                value = value or None
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
            after=values["after"],
            dry_run=values["dry_run"],
            as_json=values["as_json"],
            unique_key=values["unique_key"],
        )

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = annotations
    description, _, _ = parse_docstring(inspect.getdoc(spec.func))
    callback.__doc__ = description or spec.name
    example = example_for(spec, task_params)
    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    app.command(name=spec.name, epilog=f"Example: {example}")(callback)
    command = typer.main.get_command(app)
    _set_param_types(command, task_params)
    return command


def _set_param_types(command: Command, task_params: list[dict[str, Any]]) -> None:
    """Choices for Enum and Literal parameters (checked, completed), ISO 8601 for datetimes.

    Typer knows neither a Literal nor every ISO form, so the click parameters it built
    get their types here.
    """
    from rqjobs.cli.task_options import Choices, IsoDateTime

    by_key = {_PREFIX + p["name"]: p for p in task_params}
    for param in command.params:
        p = by_key.get(param.name or "")
        if p is None:
            continue
        if p["choices"]:
            param.type = Choices(p["choices"])
        elif p["type"].endswith("datetime") or p["type"] == "list[datetime]":
            param.type = IsoDateTime()


def _from_choice(value: Any, choices: list[Any] | None) -> Any:
    """A chosen string back to the Literal's or Enum's own value (``"3"`` -> ``3``)."""
    if not choices or value is None:
        return value
    by_text = {str(c): c for c in choices}
    if isinstance(value, list):
        return [by_text.get(v, v) for v in value]
    return by_text.get(value, value)


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
    after: list[int] | None = None,
    dry_run: bool = False,
    as_json: bool = False,
    unique_key: str | None = None,
) -> None:
    """Called by every generated ``enqueue TASK`` command: prints the id alone on stdout.

    With ``dry_run``, the same checks run and what would be enqueued is printed instead
    (JSON with ``as_json``); no row is written and Redis is not touched (a unique key is
    looked up in the database, to say whether the task would be a duplicate). A unique
    key that a live task holds prints that task's id, and "already queued as #N" on
    stderr; the exit code is 0.
    """
    from rqjobs.api import check_task, enqueue_task
    from rqjobs.timeparse import parse_duration_s, parse_time

    options: dict[str, Any] = {
        "description": description,
        "queue": queue,
        "timeout_s": int(parse_duration_s(timeout)) if timeout else None,
        "retries": retries,
        "retry_interval_s": retry_interval,
        "at": parse_time(at) if at else None,
        "delay_s": parse_duration_s(in_) if in_ else None,
        "runtime": runtime_from(ctx),
        "task_kwargs": task_kwargs,
        "unique_key": unique_key,
    }
    if dry_run:
        plan = check_task(spec.name, **options)
        shown = plan.to_dict()
        if after:
            from rqjobs.dependencies import check_after

            parents = check_after(after, scheduled=plan.scheduled_for is not None)
            options["runtime"].store.check_parents(parents)
            shown["after"] = parents
        holder = options["runtime"].store.live_holder(plan.unique_key) if plan.unique_key else None
        shown["duplicate_of"] = {"id": holder.id, "status": holder.status} if holder else None
        if as_json:
            echo_json(shown, ensure_ascii=False)
        else:
            for key, value in shown.items():
                typer.echo(f"{key}: {json.dumps(value, ensure_ascii=False)}")
        if holder is not None:
            info(f"[dim]dry run: a duplicate of #{holder.id} ({holder.status}); nothing was enqueued[/dim]")
        else:
            info("[dim]dry run: checked, nothing was enqueued[/dim]")
        return
    record = enqueue_task(spec.name, after=after or None, **options)
    typer.echo(record.id)
    if record.existing:
        info(f"already queued as #{record.id} ({record.status}); nothing was enqueued")
        return
    when_text = (
        f", scheduled for {record.scheduled_for.isoformat(timespec='seconds')}"
        if record.scheduled_for
        else ""
    )
    from rich.markup import escape

    from rqjobs.cli.render.literal import visible

    if record.status == "deferred":
        when_text += ", after " + ", ".join(f"#{p}" for p in record.after)
    note = f"task {record.id} ({visible(record.name)}) {record.status} on queue {visible(record.queue)}{when_text}"
    info(f"[dim]{escape(note)}[/dim]")


__all__ = ["EnqueueGroup", "build_command", "enqueue_app", "run_enqueue"]
