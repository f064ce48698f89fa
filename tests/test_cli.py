"""The command line as an operator uses it: each command's exit code and output checked,
then the database reopened to see what was written.

Commands run in this process through typer's ``CliRunner`` (:func:`cli`) unless
processes are the point: workers, signals, start-up imports, the console script's own
error handling and shell completion run ``rqjobs`` as a subprocess.

Rows that only need to exist (for status, stats, prune) are written through the store;
rows whose history matters (retry, cancel) come from real enqueues and real workers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event, update

from tests.conftest import Project

if TYPE_CHECKING:
    from typer.testing import Result

#: an SGR escape sequence that sets a colour (foreground or background), not just bold/dim
COLOUR_SGR = re.compile(r"\x1b\[(?:\d+;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;\d+)*m")


def seed(
    project: Project, status: str, *, name: str = "add", description: str = "seeded", **times: Any
) -> int:
    """A row with the given status and timestamps, written directly (no job)."""
    from rqjobs.store.models import Task

    store = project.store()
    record = store.insert(
        name=name, description=description, queue="default", args=[], kwargs={"a": 1, "b": 2}, timeout_s=30
    )
    values: dict[str, Any] = {"status": status, **times}
    if status in ("finished", "failed", "canceled", "running"):
        values.setdefault("attempts", 1)
    with store.engine.begin() as conn:
        conn.execute(update(Task.__table__).where(Task.__table__.c.id == record.id).values(**values))
    return record.id


def cli(project: Project, *args: str, env: dict[str, str] | None = None) -> Result:
    """``rqjobs --config <the project's> ARGS`` in this process: exit code, stdout, stderr.

    The autouse fixture has cleared every RQJOBS_* variable; rich draws 120 columns
    without colour unless ``env`` says otherwise.
    """
    from typer.testing import CliRunner

    from rqjobs.cli import app

    return CliRunner().invoke(
        app,
        ["--config", str(project.config_path), *args],
        prog_name="rqjobs",
        env={"COLUMNS": "120", "NO_COLOR": "1", "FORCE_COLOR": None, **(env or {})},
    )


def run_env(project: Project, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``project.rqjobs(*args)`` with some environment variables set (or emptied)."""
    saved = dict(project.env)
    project.env.update(env)
    try:
        return project.rqjobs(*args)
    finally:
        project.env = saved


def ago(**delta: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**delta)


# -- help, version, start-up cost ---------------------------------------------------------


def _all_command_paths(project: Project) -> list[list[str]]:
    """Every command and subcommand, including one `enqueue TASK` per registered task."""
    import typer

    from rqjobs.cli import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str], ctx: Any) -> None:
        paths.append(path)
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, [*path, name], ctx)

    ctx = root.make_context("rqjobs", ["--config", str(project.config_path)], resilient_parsing=True)
    with ctx:
        walk(root, [], ctx)
    return paths


def test_every_command_has_help_with_an_example(project: Project) -> None:
    from typer.testing import CliRunner

    from rqjobs.cli import app

    paths = _all_command_paths(project)
    names = {" ".join(p) for p in paths}
    for expected in ("status", "show", "tail", "retry", "cancel", "tasks", "stats", "prune", "worker"):
        assert expected in names
    for expected in (
        "enqueue add",
        "enqueue progress-steps",
        "enqueue send-mail",
        "redis status",
        "db upgrade",
    ):
        assert expected in names
    runner = CliRunner()
    for path in paths:
        for flag in ("--help", "-h"):
            result = runner.invoke(
                app,
                ["--config", str(project.config_path), *path, flag],
                prog_name="rqjobs",
                env={"COLUMNS": "100"},
            )
            assert result.exit_code == 0, (path, flag, result.output)
            assert "Usage: rqjobs" in result.output, (path, result.output)
            assert "Example: rqjobs" in result.output, (path, result.output)


def test_version(project: Project) -> None:
    result = cli(project, "--version")
    assert result.exit_code == 0
    assert re.fullmatch(r"rqjobs \d+\.\d+\.\d+\n", result.stdout)


def _imported_modules(stderr: str) -> set[str]:
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_help_and_status_do_not_import_rq_or_redis(project: Project) -> None:
    seed(project, "finished", started_at=ago(seconds=3), finished_at=ago(seconds=1))
    env = {**os.environ}
    for args, forbidden in (
        # nor the built-in tasks: `rqjobs.tasks` imports each (Pillow, Jinja2 ...)
        (["--help"], {"rq", "redis", "sqlalchemy", "rqjobs.tasks", "PIL", "jinja2"}),
        (["status"], {"rq", "redis"}),
        (["status", "--failed", "--json"], {"rq", "redis"}),
        (["show", "1"], {"rq", "redis"}),
    ):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "rqjobs", *args],
            cwd=project.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        modules = _imported_modules(result.stderr)
        assert "rqjobs.cli" in modules  # the parse worked: this is importtime's output
        top_level = {m.split(".")[0] for m in modules} | {m for m in modules if m.startswith("rqjobs.tasks")}
        assert not (top_level & forbidden), (args, top_level & forbidden)


# -- errors, exit codes, colour -----------------------------------------------------------


def test_errors_go_to_stderr_with_exit_codes_and_no_traceback(project: Project) -> None:
    result = cli(project, "show", "42")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "Error: no task 42"

    result = cli(project, "status", "--no-such-flag")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "No such option" in result.stderr and "Traceback" not in result.stderr

    result = cli(project, "status", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "not a duration or a time" in result.stderr and "Traceback" not in result.stderr

    refused = cli(project, "retry")  # a library InvalidInput: refused before any row
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr.strip() == "Error: give the ids of the tasks to retry, or --failed"

    from rqjobs.exceptions import TaskNotFound

    debug = cli(project, "--debug", "show", "42")  # the library's own exception, let through
    assert isinstance(debug.exception, TaskNotFound) and debug.exit_code == 1


def test_the_console_script_prints_errors_and_tracebacks_only_with_debug(project: Project) -> None:
    result = project.rqjobs("show", "42")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == "Error: no task 42"

    result = project.rqjobs("--debug", "show", "42")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr and "TaskNotFound" in result.stderr


def test_no_color_is_honoured(project: Project) -> None:
    seed(project, "failed", log="--- attempt 1 failed ---\nRuntimeError: boom\n")
    seed(project, "finished")
    coloured = cli(project, "status", env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert coloured.exit_code == 0
    assert COLOUR_SGR.search(coloured.stdout), "FORCE_COLOR should colour the table"
    plain = cli(project, "status", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert plain.exit_code == 0
    assert "failed" in plain.stdout
    assert not COLOUR_SGR.search(plain.stdout), repr(plain.stdout)
    help_text = cli(project, "status", "--help", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert not COLOUR_SGR.search(help_text.stdout)


# -- status / show ------------------------------------------------------------------------


def test_status_filters_limit_json_and_footer(project: Project) -> None:
    old = seed(
        project, "finished", created_at=ago(hours=3), started_at=ago(hours=3), finished_at=ago(hours=3)
    )
    failed = seed(project, "failed", name="fail-always", log="--- attempt 1 failed ---\nRuntimeError: x\n")
    running = seed(project, "running", name="sleep-for", started_at=ago(seconds=75), progress=40)
    queued = seed(project, "queued")
    scheduled = seed(project, "scheduled", scheduled_for=ago(seconds=-3600))
    canceled = seed(project, "canceled")

    def ids(*args: str) -> list[int]:
        # in-process (the same app, parsing and store) so that many filter combinations stay quick
        from typer.testing import CliRunner

        from rqjobs.cli import app

        result = CliRunner().invoke(app, ["--config", str(project.config_path), "status", "--json", *args])
        assert result.exit_code == 0, result.output
        return [row["id"] for row in json.loads(result.stdout)]

    assert ids() == [canceled, scheduled, queued, running, failed, old]  # newest first
    assert ids("--failed") == [failed]
    assert ids("--failed", "--running") == [running, failed]
    assert ids("--queued", "--scheduled") == [scheduled, queued]
    assert ids("--canceled") == [canceled]
    assert ids("--finished") == [old]
    assert ids("--name", "fail-always", "--name", "sleep-for") == [running, failed]
    assert ids("--since", "1h") == [canceled, scheduled, queued, running, failed]
    since_iso = ago(hours=4).astimezone().replace(tzinfo=None).isoformat(timespec="seconds")
    assert ids("--finished", "--since", since_iso) == [old]
    assert ids("--limit", "2") == [canceled, scheduled]

    row = json.loads(cli(project, "status", "--json", "--running").stdout)[0]
    assert row["status"] == "running" and row["progress"] == 40 and row["duration_s"] >= 75

    table = cli(project, "status", env={"COLUMNS": "80"})
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    header = lines[0].split()  # at 80 columns the description's title may elide
    assert header[:2] == ["ID", "TASK"] and header[2].startswith("DESCRIP")
    assert header[3:] == ["STATUS", "TRY", "CREATED", "TOOK", "ERROR"]
    assert "RuntimeError: x" in next(line for line in lines if line.lstrip().startswith(f"{failed} "))
    assert lines[-2].rstrip() == "6 of 6 tasks shown, newest first"
    assert (
        lines[-1].rstrip()
        == "all statuses: 1 queued, 1 scheduled, 1 running, 1 finished, 1 failed, 1 canceled"
    )
    failed_view = cli(project, "status", "--failed", "--json").stdout
    assert json.loads(failed_view)[0]["error"]
    filtered = cli(project, "status", "--failed").stdout.splitlines()
    assert filtered[-2].rstrip() == "1 of 1 failed tasks shown, newest first"
    running_line = next(line for line in lines if line.lstrip().startswith(f"{running} "))
    assert "running 40%" in running_line
    assert re.search(r" \dm\d\ds$", running_line.rstrip())  # readable duration so far, e.g. 1m15s


def test_status_fits_80_columns_eliding_long_descriptions(project: Project) -> None:
    long_text = "resize the holiday pictures of the whole family to every size the gallery needs " * 2
    task_id = seed(project, "failed", name="create-image-set", description=long_text)
    result = cli(project, "status", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    for line in result.stdout.splitlines():
        assert len(line.rstrip()) <= 80, line
    row_line = next(line for line in result.stdout.splitlines() if line.lstrip().startswith(str(task_id)))
    assert "…" in row_line  # the description elides ...
    for whole in ("create-image-set", "failed", "ago"):  # ... and nothing else does
        assert whole in row_line
    # with a long error too: the error and the description give way, never the status or task
    error = "rq.exceptions.DeserializationError: " + "the job could not be read " * 3
    with_error = seed(
        project, "failed", name="create-image-set", description=long_text,
        log=f"--- attempt 1 failed at 2026-01-01T00:00:00 ---\n{error}\n", started_at=ago(seconds=3),
        finished_at=ago(seconds=1),
    )  # fmt: skip
    result = cli(project, "status", env={"COLUMNS": "80"})
    lines = result.stdout.splitlines()
    for line in lines:
        assert len(line.rstrip()) <= 80, line
    assert lines[0].split()[3:] == ["STATUS", "TRY", "CREATED", "TOOK", "ERROR"]
    row_line = next(line for line in lines if line.lstrip().startswith(str(with_error)))
    for whole in ("create-image-set", " failed ", "ago", "rq.exceptions"):
        assert whole in row_line, row_line
    assert row_line.rstrip().endswith("…")  # the error's end


def test_show_prints_every_field_timings_result_and_log(project: Project) -> None:
    task_id = project.enqueue("progress-steps", "--steps", "2", "--pause-s", "0.1", description="show me")
    failing = project.enqueue("fail-always", "--message", "disk on fire", description="will fail")
    project.work()
    result = cli(project, "show", str(task_id))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for label in ("id", "task", "description", "status", "queue", "kwargs", "attempts", "created"):
        assert re.search(rf"^{label}\s", out, re.M), label
    assert "progress-steps" in out and "show me" in out and "finished" in out
    assert "waited" in out and "duration" in out
    assert '"steps": 2' in out  # the result, pretty-printed JSON
    data = json.loads(cli(project, "show", str(task_id), "--json").stdout)
    from rqjobs.store.models import TASK_COLUMNS

    assert set(TASK_COLUMNS) <= set(data)
    assert data["result"] == {"steps": 2} and data["attempts"] == 1
    out = cli(project, "show", str(failing)).stdout
    assert "Traceback (most recent call last)" in out and "RuntimeError: disk on fire" in out


def test_show_piped_is_plain_text_with_whole_tracebacks_and_progress_only_when_it_means_something(
    project: Project,
) -> None:
    from rqjobs.store.models import Task

    long_message = "the disk " + "really " * 30 + "is on fire"  # far wider than 80 columns
    steps = project.enqueue("progress-steps", "--steps", "2", "--pause-s", "0.1", description="ok")
    failing = project.enqueue("fail-always", "--message", long_message, description="will fail")
    project.work()
    # a failed row whose last report said 100% (a task that fails after its last step)
    with project.store().engine.begin() as conn:
        conn.execute(update(Task.__table__).where(Task.__table__.c.id == failing).values(progress=100))
    canceled = seed(project, "canceled", description="stopped early")
    running = seed(project, "running", description="going", progress=40, started_at=ago(seconds=5))

    def piped(task_id: int) -> str:
        result = run_env(project, {"COLUMNS": "80"}, "show", str(task_id))  # stdout is a pipe
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        out = result.stdout
        assert not set("│╭╮╰╯─┃━") & set(out), out  # no boxes, no rules
        assert "\x1b[" not in out  # no colour codes
        for line in out.splitlines():
            assert line == line.rstrip(), f"trailing spaces: {line!r}"
        return out

    out = piped(failing)
    assert f"RuntimeError: {long_message}" in out.splitlines()  # whole, on one line
    assert "Traceback (most recent call last):" in out.splitlines()
    assert re.search(r"^log:$", out, re.M) and re.search(r"^status\s+failed$", out, re.M)
    assert not re.search(r"^progress", out, re.M), out  # not "progress 100%" on a failed row
    assert not re.search(r"^progress", piped(canceled), re.M)
    assert re.search(r"^progress\s+40%$", piped(running), re.M)
    out = piped(steps)
    assert re.search(r"^progress\s+100%  step 2 of 2$", out, re.M), out
    # on a terminal (rich boxes), the same rule: no progress line for the failed row
    import io

    from rich.console import Console

    from rqjobs.cli.render.tables import task_detail

    for task_id, shown in ((failing, False), (steps, True)):
        console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
        console.print(task_detail(project.row(task_id)))
        rendered = console.file.getvalue()  # type: ignore[attr-defined]
        assert ("progress" in rendered) is shown, rendered
        assert "│" in rendered  # boxes: the terminal rendering
    assert re.search(r"^result:$", out, re.M) and '"steps": 2' in out
    assert re.search(r"^description\s+ok$", out, re.M)


# -- tasks ------------------------------------------------------------------------------


def test_tasks_lists_parameters_and_enqueue_help_shows_them(project: Project) -> None:
    result = cli(project, "tasks", env={"COLUMNS": "160"})
    assert result.exit_code == 0
    out = result.stdout
    add_line = next(line for line in out.splitlines() if line.startswith("add "))
    assert "--a int (required)" in add_line and "Add two numbers." in add_line
    assert "--pause-s float = 0.3" in out and "Report progress in steps." in out
    data = {t["name"]: t for t in json.loads(cli(project, "tasks", "--json").stdout)}
    steps = {p["name"]: p for p in data["progress-steps"]["parameters"]}
    assert steps["steps"] == {
        "name": "steps",
        "option": "--steps",
        "cli_type": True,
        "type": "int",
        "default": 4,
        "required": False,
        "choices": None,
        "help": "",
    }
    assert data["add"]["parameters"][0]["required"] is True
    assert data["send-mail"]["summary"]
    help_text = cli(project, "enqueue", "progress-steps", "--help").stdout
    assert "--steps" in help_text and "--pause-s" in help_text and "default: 0.3" in help_text
    assert "Report progress in steps." in help_text
    add_help = cli(project, "enqueue", "add", "--help").stdout
    assert "--a" in add_help and "required" in add_help


# -- retry ------------------------------------------------------------------------------


def test_retry_failed_task_then_it_succeeds(project: Project) -> None:
    marker = project.root / "flaky.count"
    task_id = project.enqueue("flaky", "--marker", str(marker), "--failures", "1", description="flaky one")
    project.work()
    assert project.row(task_id).status == "failed"
    runtime = project.runtime()
    from rq.registry import FailedJobRegistry

    failed_registry = FailedJobRegistry("default", connection=runtime.redis)
    assert str(task_id) in failed_registry.get_job_ids()

    result = cli(project, "retry", str(task_id))
    assert result.exit_code == 0, result.stderr
    assert f"#{task_id} retried" in result.stdout
    row = project.row(task_id)
    assert row.status == "queued" and row.attempts == 1 and row.finished_at is None
    assert "flaky failure 1 of 1" in row.log and "retried by" in row.log
    assert str(task_id) not in failed_registry.get_job_ids()  # RQ's old copy went first
    assert str(task_id) in runtime.queue("default").get_job_ids()

    project.work()
    row = project.row(task_id)
    assert row.status == "finished", row.log
    assert row.attempts == 2
    assert row.result == {"result": "succeeded after 1 failures"}
    assert row.log.index("flaky failure 1 of 1") < row.log.index("retried by")


def test_retry_gives_a_fresh_retry_budget_and_counts_attempts(project: Project) -> None:
    marker = project.root / "flaky.count"
    task_id = project.enqueue("flaky", "--marker", str(marker), "--failures", "3", "--retries", "1")
    project.work()
    row = project.row(task_id)
    assert row.status == "failed" and row.attempts == 2  # one run and its one retry
    assert cli(project, "retry", "--failed", "--name", "flaky").exit_code == 0
    project.work()
    row = project.row(task_id)
    # attempt 3 failed, and the budget (1 retry) was fresh, so attempt 4 ran and succeeded
    assert row.status == "finished", row.log
    assert row.attempts == 4
    for attempt in (1, 2, 3):
        assert f"--- attempt {attempt} failed" in row.log


def test_retry_refuses_what_it_cannot_retry(project: Project) -> None:
    finished = seed(project, "finished")
    running = seed(project, "running")
    failed = seed(project, "failed", name="fail-always", log="--- attempt 1 failed ---\nboom\n")
    result = cli(project, "retry", str(finished), str(running), "999")
    assert result.exit_code == 1
    assert f"#{finished} skipped: it is finished" in result.stdout
    assert f"#{running} skipped: it is running" in result.stdout
    assert "#999 skipped: no task 999" in result.stdout
    assert project.row(finished).status == "finished" and project.row(running).status == "running"

    result = cli(project, "retry")
    assert result.exit_code == 2 and "--failed" in result.stderr
    result = cli(project, "retry", "--failed", "--name", "add")
    assert result.exit_code == 0 and "no failed tasks" in result.stderr
    assert project.row(failed).status == "failed"

    data = json.loads(cli(project, "retry", "--failed", "--json").stdout)
    detail = "attempt 2 queued on default (no retries)"
    assert data == [{"id": failed, "ok": True, "action": "retried", "detail": detail}]
    assert project.row(failed).status == "queued"


def test_retry_whose_enqueue_fails_leaves_the_row_failed(project: Project) -> None:
    """Redis refuses writes (out of memory): the retried row must end failed, not queued."""
    task_id = project.enqueue("fail-always")
    project.work()
    assert project.row(task_id).status == "failed"
    client = project.redis.client()
    client.config_set("maxmemory", "1")
    client.config_set("maxmemory-policy", "noeviction")
    try:
        result = cli(project, "retry", str(task_id))
    finally:
        client.config_set("maxmemory", "0")
    assert result.exit_code == 1
    assert f"#{task_id} failed" in result.stdout
    row = project.row(task_id)
    assert row.status == "failed"
    assert "retried by" in row.log and "was not enqueued" in row.log


# -- cancel -----------------------------------------------------------------------------


def test_cancel_queued_and_scheduled_tasks_removes_their_jobs(project: Project) -> None:
    queued = project.enqueue("add", "--a", "1", "--b", "2")
    scheduled = project.enqueue("add", "--a", "1", "--b", "2", "--in", "1h")
    runtime = project.runtime()
    from rq.registry import ScheduledJobRegistry

    assert str(scheduled) in ScheduledJobRegistry("default", connection=runtime.redis).get_job_ids()
    result = cli(project, "cancel", str(queued), str(scheduled))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"#{queued} canceled: removed from queue default" in result.stdout
    assert f"#{scheduled} canceled: removed from the scheduled jobs" in result.stdout
    for task_id in (queued, scheduled):
        row = project.row(task_id)
        assert row.status == "canceled" and row.finished_at is not None and row.attempts == 0
        assert "canceled by" in row.log
    assert runtime.queue("default").get_job_ids() == []
    assert ScheduledJobRegistry("default", connection=runtime.redis).get_job_ids() == []
    assert not runtime.redis.exists(f"rq:job:{queued}")

    project.work()  # nothing left to run: the rows stay canceled
    assert project.row(queued).status == "canceled"
    again = cli(project, "cancel", str(queued))
    assert again.exit_code == 0 and "already canceled" in again.stdout

    # a canceled task can be retried: it then runs as its first attempt
    assert cli(project, "retry", str(queued)).exit_code == 0
    project.work()
    row = project.row(queued)
    assert row.status == "finished" and row.attempts == 1 and row.result == {"result": 3}
    assert row.log.index("canceled by") < row.log.index("retried by")


def test_cancel_leaves_finished_tasks_alone(project: Project) -> None:
    task_id = project.enqueue("add", "--a", "1", "--b", "2")
    project.work()
    before = project.row(task_id)
    result = cli(project, "cancel", str(task_id), "4242")
    assert result.exit_code == 1
    assert f"#{task_id} skipped: it already finished" in result.stdout
    assert "#4242 skipped: no task 4242" in result.stdout
    assert project.row(task_id) == before


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_stops_a_running_task_and_the_worker_goes_on(project: Project) -> None:
    from tests.conftest import wait_for

    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "60", "--marker", str(marker), description="long")
    after = project.enqueue("add", "--a", "2", "--b", "3", description="after")
    worker = project.start_worker("--burst")
    try:
        wait_for(marker.exists, message="the task to start")
        wait_for(lambda: project.row(task_id).status == "running", message="the row to say running")
        horse = int(marker.read_text())
        result = project.rqjobs("cancel", str(task_id))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"#{task_id} stopped" in result.stdout
        wait_for(lambda: not _alive(horse), timeout=20, message="the work horse to be killed")
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    row = project.row(task_id)
    assert row.status == "canceled", row.log
    assert row.attempts == 1 and row.result is None
    assert "stopped by" in row.log
    assert project.row(after).status == "finished"  # the worker carried on
    from rq.job import Job

    job = Job.fetch(str(task_id), connection=project.runtime().redis, serializer=_json_serializer())
    assert job.get_status() == "stopped"


def _json_serializer() -> Any:
    from rq.serializers import JSONSerializer

    return JSONSerializer


def test_worker_records_a_job_stopped_by_rq_as_canceled(project: Project) -> None:
    """RQ's own stop-job command (not `rqjobs cancel`): the worker writes the row itself."""
    from rq.command import send_stop_job_command

    from tests.conftest import wait_for

    marker = project.root / "horse.pid"
    task_id = project.enqueue("sleep-for", "--seconds", "60", "--marker", str(marker), "--retries", "2")
    worker = project.start_worker("--burst")
    try:
        wait_for(marker.exists, message="the task to start")
        send_stop_job_command(project.runtime().redis, str(task_id), serializer=_json_serializer())
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    row = project.row(task_id)
    assert row.status == "canceled", row.log  # not failed, and not queued for a retry
    assert "stopped on request" in row.log
    assert row.attempts == 1


# -- stats ------------------------------------------------------------------------------


def test_stats_counts_failure_rate_durations_and_chart(project: Project) -> None:
    for seconds in (1, 2, 3, 4, 100):
        seed(project, "finished", started_at=ago(minutes=30, seconds=seconds), finished_at=ago(minutes=30))
    seed(project, "failed", started_at=ago(minutes=10, seconds=1), finished_at=ago(minutes=10))
    seed(project, "queued")
    seed(
        project,
        "finished",
        name="echo-dict",
        started_at=ago(minutes=5, seconds=2),
        finished_at=ago(minutes=5),
    )
    seed(project, "finished", created_at=ago(days=30), started_at=ago(days=30), finished_at=ago(days=30))

    result = cli(project, "stats", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    by_name = {t["name"]: t for t in data["tasks"]}
    add = by_name["add"]
    assert add["counts"]["finished"] == 5 and add["counts"]["failed"] == 1 and add["counts"]["queued"] == 1
    assert add["total"] == 7
    assert add["failure_rate"] == pytest.approx(1 / 6)
    assert add["duration_s"]["p50"] == pytest.approx(3, abs=0.01)
    assert add["duration_s"]["p95"] == pytest.approx(100, abs=0.01)
    assert add["duration_s"]["max"] == pytest.approx(100, abs=0.01)
    assert by_name["echo-dict"]["failure_rate"] == 0
    timeline = data["timeline"]
    assert sum(timeline["finished"]) == 6 and sum(timeline["failed"]) == 1
    assert data["totals"]["finished"] == 6  # the 30-day-old row is outside the default 7 days

    everything = json.loads(cli(project, "stats", "--since", "all", "--json").stdout)
    assert everything["totals"]["finished"] == 7

    table = cli(project, "stats", env={"COLUMNS": "80"})
    assert table.exit_code == 0
    out = table.stdout
    for line in out.splitlines():
        assert len(line.rstrip()) <= 80, line
    add_line = next(line for line in out.splitlines() if line.startswith("add "))
    assert add_line.split()[1:6] == ["5", "1", "0", "1", "17%"]
    assert "1m40s" in add_line  # p95 and max, readable
    finished_row = next(line for line in out.splitlines() if line.startswith("finished "))
    assert "█" in finished_row
    assert "▁" in out or "▂" in out or "▃" in out or "▄" in out
    failed_row = next(line for line in out.splitlines() if line.startswith("failed "))
    assert "max 1" in failed_row


# -- prune ------------------------------------------------------------------------------


def test_prune_deletes_only_old_final_rows(project: Project) -> None:
    old = {
        status: seed(project, status, created_at=ago(days=40))
        for status in ("finished", "failed", "canceled")
    }
    old_running = seed(project, "running", created_at=ago(days=40))
    recent = seed(project, "finished")

    dry = cli(project, "prune", "--older-than", "30d", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout == "" and dry.stderr.startswith(
        "would delete 3 finished/failed/canceled tasks created before"
    )
    assert len(project.store().find(limit=None)) == 5

    result = cli(project, "prune", "--older-than", "30d", "--status", "finished", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == 1
    remaining = {r.id for r in project.store().find(limit=None)}
    assert remaining == {old["failed"], old["canceled"], old_running, recent}

    result = cli(project, "prune", "--older-than", "30d")
    assert result.exit_code == 0 and result.stderr.startswith("deleted 2 ")
    assert {r.id for r in project.store().find(limit=None)} == {old_running, recent}

    refused = cli(project, "prune", "--older-than", "30d", "--status", "running")
    assert refused.exit_code == 2 and "only final tasks can be pruned" in refused.stderr
    assert cli(project, "prune", "--older-than", "soon").exit_code == 2
    assert cli(project, "prune").exit_code == 2  # --older-than is required
    assert {r.id for r in project.store().find(limit=None)} == {old_running, recent}


def test_prune_deletes_old_final_rows_in_batches(project: Project) -> None:
    """More old rows than one batch: one DELETE per batch, each at most a batch long."""
    import inspect

    from rqjobs.store.models import Task
    from rqjobs.store.repository import TaskStore

    batch = inspect.signature(TaskStore.delete_older_than).parameters["batch"].default
    old_count = 2 * batch + batch // 2
    store = project.store()
    row = {
        "name": "add",
        "description": "bulk",
        "queue": "default",
        "args": [],
        "kwargs": {},
        "status": "finished",
        "progress": 100,
        "attempts": 1,
        "max_retries": 0,
        "timeout_s": 30,
        "created_at": ago(days=90),
    }
    with store.engine.begin() as conn:
        conn.execute(Task.__table__.insert(), [row] * old_count)
    old_running = seed(project, "running", created_at=ago(days=90))
    recent = seed(project, "finished")

    deletes: list[int] = []

    def count_deletes(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(cursor.rowcount)

    event.listen(store.engine, "after_cursor_execute", count_deletes)
    try:
        result = cli(project, "prune", "--older-than", "30d")
    finally:
        event.remove(store.engine, "after_cursor_execute", count_deletes)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"deleted {old_count} finished/failed/canceled tasks created before")
    assert deletes == [batch, batch, batch // 2]
    assert {r.id for r in store.find(limit=None)} == {old_running, recent}


# -- completion -------------------------------------------------------------------------


def _complete(project: Project, words: str, cword: int) -> list[str]:
    env = {"_RQJOBS_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    result = run_env(project, env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.split()


def test_shell_completion_of_commands_and_task_names(project: Project) -> None:
    assert {"status", "stats", "show"} <= set(_complete(project, "rqjobs s", 1))
    tasks = _complete(project, "rqjobs enqueue ", 2)
    assert {"add", "progress-steps", "send-mail", "flaky"} <= set(tasks)
    assert _complete(project, "rqjobs enqueue pro", 2) == ["progress-steps"]
    assert {"fail-always", "fail-permanently", "flaky"} == set(
        _complete(project, "rqjobs status --name f", 3)
    )
    assert "--failed" in _complete(project, "rqjobs retry --f", 2)
    # a broken config: completion offers nothing, and prints no error into the prompt
    project.config_path.write_text(project.config_path.read_text() + "bogus_key = 1\n")
    assert _complete(project, "rqjobs enqueue ", 2) == []
    assert _complete(project, "rqjobs status --name ", 3) == []


def test_install_completion_writes_a_working_bash_script(project: Project, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "SHELL": "/bin/bash"}
    result = run_env(project, env, "--install-completion", "bash")
    assert result.returncode == 0, result.stderr
    script = home / ".bash_completions" / "rqjobs.sh"
    assert "_RQJOBS_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (home / ".bashrc").read_text()
    # run the installed function the way bash does on <TAB>
    bin_dir = home / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "rqjobs"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rqjobs "$@"\n')
    launcher.chmod(0o755)
    probe = (
        f"source {script}; COMP_WORDS=(rqjobs enqueue progress-); COMP_CWORD=2; "
        '_rqjobs_completion rqjobs; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(
        ["bash", "--norc", "-c", probe],
        cwd=project.root,
        env={**os.environ, **env, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["progress-steps"]


def test_cancel_a_running_row_whose_worker_is_gone(project: Project) -> None:
    """A row left running by a dead worker: no one to stop, the row is canceled all the same."""
    runtime = project.runtime()
    record = runtime.store.insert(
        name="sleep-for", description="orphan", queue="default", args=[], kwargs={}, timeout_s=30
    )
    assert runtime.store.mark_running(record.id, "gone-host:1")
    job = runtime.queue("default").create_job("sample_tasks.sleep_for", job_id=record.job_id)
    job.worker_name = "ghost-worker"
    job.save()
    result = cli(project, "cancel", str(record.id))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"#{record.id} stopped: its worker (ghost-worker) is gone" in result.stdout
    row = project.row(record.id)
    assert row.status == "canceled" and "is gone" in row.log
