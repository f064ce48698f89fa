"""User tasks: a module named in ``tasks_modules`` and a plugin found through the
``rqjobs.tasks`` entry-point group, discovered and run by real worker subprocesses.

The plugin is "installed" the cheapest real way: a folder on the subprocesses'
PYTHONPATH holding the package and a ``*.dist-info`` directory with an
``entry_points.txt``, which importlib.metadata discovers like any installed
distribution. Rows are read without importing any task module into the test process
(some of these modules are broken on purpose).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.helpers import configure, read_row, row_count

PLUGIN = "issue5_plugin"

GREET_MODULE = '''
from rqjobs import background_task, set_task_progress


@background_task
def greet(name: str, times: int = 1) -> dict:
    """Greet someone, TIMES times."""
    set_task_progress(50, "greeting")
    return {"greeting": " ".join([f"Hello {name}!"] * times)}


def _tidy(arguments):
    return {**arguments, "name": arguments["name"].strip().title()}


@background_task(validate=_tidy)
def tidy_name(name: str, **extra) -> dict:
    """Return the name as validate normalised it, and the extra keyword arguments."""
    return {"name": name, "extra": extra}


def _not_a_dict(arguments):
    return ["oops"]


@background_task(validate=_not_a_dict)
def badly_validated(name: str) -> None:
    """Its validate function returns the wrong type."""
'''

PLUGIN_MODULE = '''
from rqjobs import background_task


@background_task(name="plugin-shout")
def shout(text: str) -> str:
    """Shout TEXT back."""
    return text.upper() + "!"
'''


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def install_plugin(
    project: Project, folder: Path, entry_points: str, module: str | None = PLUGIN_MODULE
) -> None:
    """A distribution 'issue5-plugin' on the subprocesses' path, exposing ``entry_points``."""
    if module is not None:
        _write(folder / PLUGIN / "__init__.py", module)
    dist = folder / f"{PLUGIN}-1.0.dist-info"
    _write(dist / "METADATA", "Metadata-Version: 2.1\nName: issue5-plugin\nVersion: 1.0\n")
    _write(dist / "entry_points.txt", f"[rqjobs.tasks]\n{entry_points}\n")
    project.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))


def assert_clear_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert result.stderr.startswith("Error: "), output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in {result.stderr!r}"


def test_module_and_plugin_tasks_are_listed_enqueued_and_run(project: Project, tmp_path: Path) -> None:
    _write(project.root / "myapp" / "__init__.py", "")
    _write(project.root / "myapp" / "tasks.py", GREET_MODULE)
    configure(project, tasks_modules=["sample_tasks", "myapp.tasks"])
    install_plugin(project, tmp_path / "plugins", f"shout = {PLUGIN}")

    listed = project.rqjobs("tasks", "--json", check=True)
    tasks = {t["name"]: t for t in json.loads(listed.stdout)}
    assert {
        "greet",
        "tidy-name",
        "plugin-shout",
        "add",
        "count-words",
        "send-mail",
        "create-image-set",
    } <= set(tasks)
    assert tasks["greet"]["path"] == "myapp.tasks.greet"
    assert tasks["greet"]["summary"] == "Greet someone, TIMES times."
    assert [(p["name"], p["required"]) for p in tasks["greet"]["parameters"]] == [
        ("name", True),
        ("times", False),
    ]
    assert tasks["plugin-shout"]["path"] == f"{PLUGIN}.shout"
    table = project.rqjobs("tasks", check=True).stdout
    assert "greet" in table and "plugin-shout" in table and "Shout TEXT back." in table
    help_text = project.rqjobs("enqueue", "--help", check=True).stdout
    assert "greet" in help_text and "plugin-shout" in help_text

    greet = project.enqueue("greet", "--name", "Ana", "--times", "2", description="greet Ana")
    shout = project.enqueue("plugin-shout", "--text", "hello", description="from the plugin")
    # validate may return normalised arguments: the row and the job carry those
    tidy = project.enqueue("tidy-name", "--name", "  ana maria ", "--kwargs", '{"mood": "happy"}')
    assert read_row(project, tidy).kwargs == {"name": "Ana Maria", "mood": "happy"}
    project.work()

    row = read_row(project, greet)
    assert row.status == "finished", row.log
    assert row.result == {"greeting": "Hello Ana! Hello Ana!"}
    assert row.progress_message == "greeting"
    row = read_row(project, shout)
    assert row.status == "finished", row.log
    assert row.result == {"result": "HELLO!"}
    row = read_row(project, tidy)
    assert row.status == "finished", row.log
    assert row.result == {"name": "Ana Maria", "extra": {"mood": "happy"}}

    wrong = project.rqjobs("enqueue", "badly-validated", "--description", "x", "--name", "a")
    assert_clear_error(wrong, "task 'badly-validated': its validate function returned list")
    assert row_count(project) == 3


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        (None, "ModuleNotFoundError: No module named 'user_tasks'"),
        (
            "import not_installed_dependency\n",
            "ModuleNotFoundError: No module named 'not_installed_dependency'",
        ),
        ("raise RuntimeError('settings missing')\n", "RuntimeError: settings missing"),
        ("def broken(:\n", "SyntaxError: "),
    ],
)
def test_a_module_that_fails_to_import_is_named(project: Project, source: str | None, cause: str) -> None:
    if source is not None:
        _write(project.root / "user_tasks.py", source)
    configure(project, tasks_modules=["sample_tasks", "user_tasks"])
    what = "cannot import task module 'user_tasks' (from tasks_modules): "

    assert_clear_error(project.rqjobs("tasks"), what, cause)
    assert_clear_error(project.rqjobs("worker", "--burst"), what, cause)
    enqueue = project.rqjobs("enqueue", "count-words", "--description", "x", "--text", "a b")
    assert_clear_error(enqueue, what, cause)
    assert row_count(project) == 0


def test_a_plugin_that_fails_to_load_is_named(project: Project, tmp_path: Path) -> None:
    install_plugin(project, tmp_path / "plugins", "gone = issue5_not_there:tasks", module=None)
    result = project.rqjobs("tasks")
    assert_clear_error(
        result,
        "cannot load task plugin 'gone' (issue5_not_there:tasks, entry point group 'rqjobs.tasks'): "
        "ModuleNotFoundError: No module named 'issue5_not_there'",
    )
    assert_clear_error(project.rqjobs("worker", "--burst"), "cannot load task plugin 'gone'")


TWICE = '''
from rqjobs import background_task


@background_task(name="twice")
def twice() -> None:
    """One of two tasks with the same name."""
'''


def test_two_tasks_with_the_same_name_are_refused(project: Project, tmp_path: Path) -> None:
    _write(project.root / "dup_a.py", TWICE)
    _write(project.root / "dup_b.py", TWICE)
    configure(project, tasks_modules=["dup_a", "dup_b"])
    both = "two tasks are named 'twice': dup_a.twice and dup_b.twice; give one another name"
    assert_clear_error(project.rqjobs("tasks"), both)
    assert_clear_error(project.rqjobs("worker", "--burst"), both)
    assert_clear_error(project.rqjobs("enqueue", "count-words", "--description", "x", "--text", "a"), both)
    assert row_count(project) == 0

    # a user task may not take a built-in's name either
    _write(project.root / "clash.py", TWICE.replace('name="twice"', 'name="count-words"'))
    configure(project, tasks_modules=["clash"])
    assert_clear_error(
        project.rqjobs("tasks"),
        "two tasks are named 'count-words': rqjobs.tasks.word_counter.count_words and clash.twice",
    )

    # nor may a plugin take a module's
    configure(project, tasks_modules=["dup_a"])
    install_plugin(project, tmp_path / "plugins", f"dup = {PLUGIN}", module=TWICE)
    assert_clear_error(
        project.rqjobs("tasks"), f"two tasks are named 'twice': dup_a.twice and {PLUGIN}.twice"
    )
