"""The registry of task names: what ``@background_task`` registered, and loading task modules.

The decorator (:mod:`rqjobs.tasks.commons`) fills it; the enqueue side looks a task up by
name, the worker's job class by import path. It imports nothing heavy and nothing above
the exceptions and config, so the broker's job class can use it (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rqjobs.exceptions import InvalidTaskArguments, TaskDefinitionError, TaskModuleImportError, UnknownTask

if TYPE_CHECKING:
    from rqjobs.config import Settings

#: parameter names rqjobs' own options use. A task may still use them: `rqjobs enqueue`
#: then offers the parameter as ``--param-NAME``, and ``enqueue_task`` takes it in
#: ``task_kwargs={...}`` when it is one of its own keywords
RESERVED_PARAMETERS = frozenset(
    {
        "description",
        "queue",
        "timeout",
        "timeout_s",
        "retries",
        "retry_interval",
        "retry_interval_s",
        "at",
        "in",
        "in_",
        "delay",
        "delay_s",
        "after",
        "kwargs",
        "config",
        "debug",
        "json",
        "help",
        "task",
        "unique_key",
        "from_jsonl",
    }
)
ENTRY_POINT_GROUP = "rqjobs.tasks"
BUILTIN_TASKS_MODULE = "rqjobs.tasks"


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its name, the function, and its per-task defaults."""

    name: str
    func: Callable[..., Any]
    path: str
    queue: str | None = None
    timeout_s: int | None = None
    retries: int | None = None
    retry_interval_s: int | list[int] | None = None
    validate: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    #: at most this many jobs of the task run at once across every worker (None: no limit);
    #: ``[limits]`` in rqjobs.toml beats it (rqjobs.flow.concurrency_limit)
    max_running: int | None = None
    #: ``@background_task(unique=True)``: while a row with the same arguments is live,
    #: enqueueing it again returns that row (rqjobs.checks.task_unique_key)
    unique: bool = False
    signature: inspect.Signature = field(default=None, repr=False)  # type: ignore[assignment]
    #: the decorated function: what a worker calls
    wrapper: Callable[..., Any] = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def summary(self) -> str:
        """First line of the docstring: what `rqjobs tasks` shows."""
        doc = inspect.getdoc(self.func) or ""
        return doc.splitlines()[0] if doc else ""

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Check the arguments against the signature; returns them by name, defaults applied."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            # "missing a required argument: 'to'" -> "... 'to' (--to)": CLI users know options
            message = re.sub(
                r"'(\w+)'$", lambda m: f"{m.group(0)} (--{m.group(1).replace('_', '-')})", str(exc)
            )
            raise InvalidTaskArguments(f"{self.name}: {message}") from None
        bound.apply_defaults()
        return dict(bound.arguments)


_registry: dict[str, TaskSpec] = {}
_by_path: dict[str, TaskSpec] = {}


def check_parameters(name: str, func: Callable[..., Any], signature: inspect.Signature) -> None:
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise TaskDefinitionError(f"task {name!r}: *{param.name} is not supported; use a list parameter")


def register(spec: TaskSpec) -> None:
    """Add a task; a second task under the same name from elsewhere is refused."""
    existing = _registry.get(spec.name)
    if existing is not None and existing.path != spec.path:
        raise TaskDefinitionError(
            f"two tasks are named {spec.name!r}: {existing.path} and {spec.path}; give one another name"
        )
    _registry[spec.name] = spec
    _by_path[spec.path] = spec


def snapshot() -> tuple[dict[str, TaskSpec], dict[str, TaskSpec]]:
    """The registry's state, for :func:`restore` (tests keep tasks they define from leaking)."""
    return dict(_registry), dict(_by_path)


def restore(state: tuple[dict[str, TaskSpec], dict[str, TaskSpec]]) -> None:
    """Back to ``state``, keeping the tasks of modules :func:`load_task_modules` imported since.

    Those modules stay imported (Python will not run them again), and a later
    :func:`load_task_modules` counts on their tasks being registered.
    """
    registry, by_path = state
    loaded = {key.removeprefix("ep:").split(":")[0] for key in _loaded}
    kept = {
        name: spec for name, spec in _registry.items() if name in registry or spec.func.__module__ in loaded
    }
    _registry.clear()
    _registry.update(kept)
    _by_path.clear()
    _by_path.update({spec.path: spec for spec in kept.values()})


def registered_tasks() -> dict[str, TaskSpec]:
    """Name -> spec of every task registered so far, sorted by name."""
    return dict(sorted(_registry.items()))


def get_task(task: str | Callable[..., Any]) -> TaskSpec:
    """The spec of a task given by name or by its decorated function."""
    if callable(task):
        spec = getattr(task, "rqjobs_task", None)
        if spec is None:
            raise UnknownTask(f"{getattr(task, '__name__', task)!r} is not decorated with @background_task")
        return spec
    spec = _registry.get(task)
    if spec is None:
        known = ", ".join(sorted(_registry)) or "none"
        raise UnknownTask(f"no task named {task!r} (registered: {known})")
    return spec


def spec_for_path(path: str | None) -> TaskSpec | None:
    """The registered task whose import path is ``path`` (what RQ stores as func_name)."""
    return _by_path.get(path or "")


_loaded: set[str] = set()


def load_task_modules(settings: Settings) -> dict[str, TaskSpec]:
    """Import the built-in tasks, the configured ``tasks_modules`` and the entry points.

    Each module is imported once per process. The config file's folder and the working
    directory are importable, as users expect of ``myapp.tasks``.
    """
    for folder in (str(settings.base_dir), os.getcwd()):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    modules: list[tuple[str, str]] = [(BUILTIN_TASKS_MODULE, "built-in tasks")]
    modules += [(m, "tasks_modules") for m in settings.tasks_modules]
    for module, source in modules:
        _import_once(module, source)
    _load_entry_points()
    return registered_tasks()


def _import_once(module: str, source: str) -> None:
    if module in _loaded:
        return
    try:
        importlib.import_module(module)
    except TaskDefinitionError:
        raise
    except Exception as exc:
        raise TaskModuleImportError(
            f"cannot import task module {module!r} (from {source}): {type(exc).__name__}: {exc}"
        ) from exc
    _loaded.add(module)


def _load_entry_points() -> None:
    if "entry-points" in _loaded:
        return
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"ep:{ep.value}"
        if key in _loaded:
            continue
        try:
            ep.load()
        except TaskDefinitionError:
            raise
        except Exception as exc:
            raise TaskModuleImportError(
                f"cannot load task plugin {ep.name!r} ({ep.value}, entry point group {ENTRY_POINT_GROUP!r}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _loaded.add(key)
    _loaded.add("entry-points")
