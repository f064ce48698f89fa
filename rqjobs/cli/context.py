"""What every command shares: the settings and runtime of this invocation, the consoles,
and the options several commands take.

Cheap to import (Typer only): ``rqjobs --help`` imports every command module, so the
config, the store, rq and rich are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from rqjobs.cli._click import Context

if TYPE_CHECKING:
    from rich.console import Console

    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime
    from rqjobs.tasks.commons import TaskSpec

#: task ids and limits are 32-bit integers in every supported database
MAX_ID = 2**31 - 1

#: plain click help for every group: rich help costs ~60 ms of imports per start
GROUP_SETTINGS: Mapping[str, Any] = {
    "no_args_is_help": True,
    "context_settings": {"help_option_names": ["-h", "--help"]},
    "rich_markup_mode": None,
}


def settings_from(ctx: Context) -> Settings:
    """Load the settings once per invocation, from the root command's options."""
    from rqjobs.config import load_settings, set_current_settings

    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if "settings" not in obj:
        if "config" not in obj:  # enqueue's group resolves subcommands before the root callback runs
            params = root.params
            obj.update(
                config=params.get("config"),
                overrides={k: params.get(k) for k in ("database_url", "redis_url", "data_dir")},
            )
        obj["settings"] = load_settings(obj.get("config"), overrides=obj.get("overrides"))
        set_current_settings(obj["settings"])
        root.obj = obj
    settings: Settings = obj["settings"]
    return settings


def runtime_from(ctx: Context) -> Runtime:
    from rqjobs.runtime import get_runtime

    return get_runtime(settings_from(ctx))


def load_tasks(ctx: Context) -> dict[str, TaskSpec]:
    from rqjobs.tasks.commons import load_task_modules

    return load_task_modules(settings_from(ctx))


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def info(message: str) -> None:
    """A dim note for people on stderr: stdout keeps only the data."""
    stderr().print(message)


def echo_json(data: Any, **dumps: Any) -> None:
    """Data on stdout as indented JSON (``--json`` on every command)."""
    import json

    typer.echo(json.dumps(data, indent=2, **dumps))


def complete_task_name(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for ``--name``: the registered task names."""
    try:
        names = list(load_tasks(ctx))
    except Exception:  # completion must never print an error into the user's prompt
        return []
    return [n for n in names if n.startswith(incomplete)]


#: `--name/-n` on status, tail and stats: repeatable, completed from the registered tasks
TaskNameOption = Annotated[
    Optional[list[str]],
    typer.Option("--name", "-n", help="Only this task name (repeatable).", autocompletion=complete_task_name),
]

#: `--json` on the commands whose output is data
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
