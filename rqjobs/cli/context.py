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
        from rqjobs.private import exposure_warning_once

        warning = exposure_warning_once(obj["settings"].data_dir)
        if warning is not None:
            stderr().print(warning, markup=False, soft_wrap=True)
        set_current_settings(obj["settings"])
        root.obj = obj
        _note_new_data_folder(root, obj["settings"])
    settings: Settings = obj["settings"]
    return settings


def _note_new_data_folder(root: Context, settings: Settings) -> None:
    """Say on stderr, after the command, if it created the data folder (only the first time).

    A command run outside the project (no rqjobs.toml found) would otherwise start a
    database and a Redis of its own without a word, and its jobs would wait unseen.
    """
    from rqjobs.runtime import data_folder_of

    folder = data_folder_of(settings)
    if folder is None or folder.exists():
        return

    def note() -> None:
        if folder.exists():
            where = f"from {settings.config_path}" if settings.config_path else "no rqjobs.toml found"
            info(f"rqjobs: created the data folder {folder} ({where})")

    root.call_on_close(note)


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
