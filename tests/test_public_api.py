"""Issue 12: the public API and the generated CLI as a user meets them.

Real parts throughout: the session's private redis-server, SQLite files, `rqjobs worker
--burst` subprocesses, fresh Python processes for the "no set-up" API; the CLI is run
in-process with CliRunner where only its parsing and output are under test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import TESTS_DIR, Project
from tests.test_cli import cli


def _with_typed_tasks(project: Project) -> None:
    shutil.copy(TESTS_DIR / "support" / "typed_tasks.py", project.root / "typed_tasks.py")
    text = project.config_path.read_text().replace('["sample_tasks"]', '["sample_tasks", "typed_tasks"]')
    project.config_path.write_text(text)


def _python(project: Project, cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in ``cwd``: no set-up but ``import rqjobs``."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("RQJOBS_")},
    )


def test_public_api_works_from_a_subfolder_with_no_set_up(project: Project) -> None:
    sub = project.root / "app" / "views"
    sub.mkdir(parents=True)
    enqueued = _python(
        project,
        sub,
        """
        import rqjobs
        record = rqjobs.enqueue_task("add", 2, b=3, description="from a subfolder")
        print(record.id)
        """,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = int(enqueued.stdout.strip())
    assert not (sub / ".rqjobs").exists() and not (project.root / "app" / ".rqjobs").exists()
    project.work()
    read = _python(
        project,
        sub,
        f"""
        import rqjobs
        task = rqjobs.get_task({task_id})
        done = rqjobs.list_tasks(status="finished", names="add")
        print(task.status, task.result, [t.id for t in done])
        print(rqjobs.get_task(999999), rqjobs.cancel_tasks([{task_id}])[0].action)
        print(rqjobs.retry_tasks([{task_id}])[0].ok)
        """,
    )
    assert read.returncode == 0, read.stderr
    lines = read.stdout.splitlines()
    assert lines[0] == f"finished {{'result': 5}} [{task_id}]"
    assert lines[1] == "None skipped" and lines[2] == "False"


def test_configure_names_a_config_file_and_overrides(project: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _python(
        project,
        elsewhere,
        f"""
        import rqjobs
        settings = rqjobs.configure({str(project.config_path)!r}, default_queue="low")
        record = rqjobs.enqueue_task("add", a=1, b=1, description="configured")
        print(record.queue, settings.config_path)
        try:
            rqjobs.list_tasks(status="nonsense")
        except rqjobs.InvalidInput as exc:
            print("refused:", exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == f"low {project.config_path}"
    assert second.startswith("refused: unknown status nonsense")
    assert not (elsewhere / ".rqjobs").exists()


def test_cli_finds_the_config_in_a_parent_and_notes_a_new_data_folder_once(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "deep" / "er").mkdir(parents=True)
    (root / "rqjobs.toml").write_text('default_queue = "from-parent"\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rqjobs", *args],
            cwd=root / "deep" / "er",
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = run("status", "--json")
    try:
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout) == []
        assert (root / ".rqjobs").is_dir() and not (root / "deep" / "er" / ".rqjobs").exists()
        assert first.stderr.count("created the data folder") == 1
        assert str(root / ".rqjobs") in first.stderr
        second = run("status", "--json")
        assert second.returncode == 0 and "created the data folder" not in second.stderr
    finally:
        subprocess.run(
            [sys.executable, "-m", "rqjobs", "redis", "stop"], cwd=root, capture_output=True, timeout=60
        )


def test_validate_raising_value_error_refuses_with_exit_2_and_no_row(project: Project) -> None:
    _with_typed_tasks(project)
    result = cli(project, "enqueue", "numpy-style", "-d", "x", "--count", "-1")
    assert result.exit_code == 2, result.output
    assert "count must not be negative" in result.stderr and "ValueError" not in result.stderr
    assert project.store().find() == []


def test_input_error_in_the_worker_is_not_retried(project: Project) -> None:
    _with_typed_tasks(project)
    task_id = project.enqueue("refuses-in-worker", "--value", "x")
    project.work()
    row = project.row(task_id)
    assert row.status == "failed" and row.attempts == 1
    assert row.error == "rqjobs.exceptions.InvalidTaskArguments: cannot use 'x'"
    assert "failed permanently (an input error: not retried)" in row.log


def test_generated_options_parse_as_users_expect_and_the_worker_gets_the_types(project: Project) -> None:
    _with_typed_tasks(project)
    args = ["enqueue", "paint", "-d", "paint it", "--color", "green", "--shade", "dark", "--glossy"]
    args += ["--where", "out/a.png", "--when", "2030-01-31 09:00+02:00", "--tags", "a", "--tags", "b"]
    args += ["--param-delay", "5", "--param-queue", "zz"]
    dry = cli(project, *args, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert plan["queue"] == "default"  # --param-queue is the task's, not rqjobs' --queue
    assert plan["kwargs"] == {
        "color": "green",
        "shade": "dark",
        "glossy": True,
        "where": "out/a.png",
        "when": "2030-01-31T09:00:00+02:00",
        "tags": ["a", "b"],
        "delay": 5,
        "queue": "zz",
    }
    assert "nothing was enqueued" in dry.stderr
    assert project.store().find() == []
    bad = cli(project, "enqueue", "paint", "-d", "x", "--color", "blue", "--dry-run")
    assert bad.exit_code == 2 and "'blue' is not one of red, green" in bad.stderr
    result = cli(project, *args)
    assert result.exit_code == 0, result.output
    project.work()
    assert project.row(int(result.stdout)).result == {
        "color": "Color:green",
        "where": "PosixPath",
        "when": "datetime",
        "glossy": True,
        "delay": 5,
        "queue": "zz",
        "tags": ["a", "b"],
    }


def test_choices_complete_in_the_shell(project: Project) -> None:
    from rqjobs.cli.enqueue import build_command, run_enqueue
    from rqjobs.tasks.registry import get_task

    _with_typed_tasks(project)
    project.runtime()  # imports the configured task modules
    command = build_command(get_task("paint"), run_enqueue)
    color = next(p for p in command.params if p.name == "task__color")
    assert [c.value for c in color.type.shell_complete(None, color, "g")] == ["green"]


def test_docstring_help_in_three_styles_shows_in_help_and_tasks(project: Project) -> None:
    _with_typed_tasks(project)
    paint = cli(project, "enqueue", "paint", "-h").stdout
    assert re.search(r"--color \[red\|green\]\s+The colour to paint with\.", paint)
    assert "How light the paint is." in paint and "--glossy / --no-glossy" in paint
    assert "Seconds to wait first." in paint and "--param-delay" in paint
    numpy = cli(project, "enqueue", "numpy-style", "-h").stdout
    assert "How many things." in numpy and "--mode [1|2]" in numpy and "-------" not in numpy
    assert "Who to greet." in cli(project, "enqueue", "sphinx-style", "-h").stdout
    listing = cli(project, "tasks", env={"COLUMNS": "200"}).stdout
    assert "How many things." in listing and "Who to greet." in listing
    data = {t["name"]: t for t in json.loads(cli(project, "tasks", "--json").stdout)}
    params = {p["name"]: p for p in data["paint"]["parameters"]}
    assert params["delay"]["option"] == "--param-delay" and params["color"]["choices"] == ["red", "green"]


def test_reserved_parameter_names_break_nothing(project: Project) -> None:
    _with_typed_tasks(project)
    assert cli(project, "tasks").exit_code == 0
    from rqjobs.api import check_task

    project.runtime()
    plan = check_task("paint", description="x", color="red", task_kwargs={"queue": "mine", "delay": 2})
    assert plan.queue == "default" and plan.kwargs["queue"] == "mine" and plan.kwargs["delay"] == 2


def _help_examples(text: str) -> list[str]:
    """Every ``Example: ...`` in a help text (wrapped lines joined)."""
    found = []
    for match in re.finditer(r"Example: (.*?)(?:\n\s*\n|\Z)", text, re.S):
        found.extend(part.strip() for part in " ".join(match.group(1).split()).split("&&"))
    return found


def test_every_enqueue_example_in_every_help_text_runs(project: Project) -> None:
    import shlex

    _with_typed_tasks(project)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(project.root / "photo.jpg", "JPEG")
    (project.root / "guide.pdf").write_bytes(b"%PDF-1.4\n")
    texts = [cli(project, "-h").stdout, cli(project, "enqueue", "-h").stdout]
    names = [t["name"] for t in json.loads(cli(project, "tasks", "--json").stdout)]
    texts += [cli(project, "enqueue", name, "-h").stdout for name in names]
    examples = [e for text in texts for e in _help_examples(text) if e.startswith("rqjobs enqueue ")]
    assert len(examples) >= len(names)
    cwd = os.getcwd()
    os.chdir(project.root)  # the examples name files in the project folder
    try:
        for example in examples:
            result = cli(project, *shlex.split(example)[1:], "--dry-run")
            assert result.exit_code == 0, f"{example}\n{result.output}"
    finally:
        os.chdir(cwd)
    assert project.store().find() == []


def test_template_if_on_a_missing_variable_is_false_but_a_missing_output_refuses(
    project: Project, tmp_path: Path
) -> None:
    import pytest

    from rqjobs.config import with_overrides
    from rqjobs.exceptions import InvalidTaskArguments
    from rqjobs.tasks.mail_sender import render_template

    folder = tmp_path / "templates" / "t"
    folder.mkdir(parents=True)
    (folder / "note.txt").write_text("Hi {{ name }}{% if note %} - {{ note }}{% endif %}\n")
    settings = with_overrides(project.settings(), templates_dir=tmp_path / "templates")
    assert render_template("t/note", {"name": "Ann"}, settings)[0] == "Hi Ann\n"
    assert render_template("t/note", {"name": "Ann", "note": "x"}, settings)[0] == "Hi Ann - x\n"
    with pytest.raises(InvalidTaskArguments, match="'name' is undefined"):
        render_template("t/note", {}, settings)


def test_mail_backend_auto(tmp_path: Path) -> None:
    from rqjobs.config import load_settings

    path = tmp_path / "rqjobs.toml"
    path.write_text('[mail]\nhost = "smtp.example.com"\n')
    assert load_settings(path, env={}).mail.backend == "smtp"
    path.write_text("[mail]\nport = 2525\n")
    assert load_settings(path, env={}).mail.backend == "outbox"
    path.write_text('[mail]\nhost = "smtp.example.com"\nbackend = "outbox"\n')
    assert load_settings(path, env={}).mail.backend == "outbox"


def test_the_readme_lists_exactly_the_reserved_parameter_names() -> None:
    """The README's list of reserved names is the code's (tasks/registry.py), in count and names."""
    import re

    from rqjobs.tasks.registry import RESERVED_PARAMETERS
    from tests.conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(
        r"\*\*Reserved names\.\*\* (\d+) parameter names are rqjobs' own: (.*?)\. A task", readme, re.S
    )
    assert match, "README: the reserved names paragraph"
    listed = re.findall(r"`(\w+)`", match.group(2))
    assert int(match.group(1)) == len(listed) == len(RESERVED_PARAMETERS)
    assert set(listed) == RESERVED_PARAMETERS


def test_a_generated_example_quotes_a_summary_that_holds_quotes() -> None:
    """The made-up example (no ``Example:`` line) must survive the shell whatever the summary."""
    import shlex
    from types import SimpleNamespace

    from rqjobs.cli.task_options import example_for

    def task() -> None:
        """Report 50 "step 1/2" then $HOME's `100`."""

    for summary in ('Report 50 "step 1/2" then $HOME\'s `100`.', "plain words", "it's fine"):
        spec = SimpleNamespace(func=task, name="quoted", summary=summary)
        example = example_for(spec, [])  # type: ignore[arg-type]
        assert shlex.split(example) == ["rqjobs", "enqueue", "quoted", "--description", summary], example
