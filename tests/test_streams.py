"""Which stream gets what, for every command: data on stdout (ids, tables, JSON, lines a
script reads), logs and human messages on stderr (notes, summaries, the worker's log,
errors). Each command runs as a subprocess with real pipes, as a script would run it.

The first test also walks the command tree, so a new command without a case here fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import Project

Check = Callable[[str], bool]


def empty(text: str) -> bool:
    return text == ""


def has(*needles: str) -> Check:
    return lambda text: bool(text) and all(n in text for n in needles)


def matches(pattern: str) -> Check:
    return lambda text: re.fullmatch(pattern, text, re.S) is not None


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def json_lines(text: str) -> bool:
    return bool(text) and all(is_json(line) for line in text.splitlines())


@dataclass
class Case:
    args: list[str]
    stdout: Check
    stderr: Check
    code: int = 0
    #: a worker logs the tracebacks of the jobs that failed; nothing else prints one
    tracebacks: bool = False


def _all_commands(project: Project) -> set[str]:
    """Every command path (``redis stop``); the generated ``enqueue TASK`` count as ``enqueue``."""
    import typer

    from rqjobs.cli import app

    root = typer.main.get_command(app)
    found: set[str] = set()

    def walk(command: Any, path: list[str], ctx: Any) -> None:
        if path and path[0] == "enqueue":
            found.add("enqueue")
            return
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name], ctx)
        elif path:
            found.add(" ".join(path))

    ctx = root.make_context("rqjobs", ["--config", str(project.config_path)], resilient_parsing=True)
    with ctx:
        walk(root, [], ctx)
    return found


def _command_of(args: list[str]) -> str:
    words = [a for a in args if not a.startswith("-")]
    if words and words[0] in ("redis", "db", "schedule"):
        return " ".join(words[:2])
    return words[0] if words else ""


def test_every_command_sends_data_to_stdout_and_messages_to_stderr(project: Project, tmp_path: Path) -> None:
    config = project.config_path.read_text()
    project.config_path.write_text(
        config + '\n[[schedule]]\nname = "daily-add"\ntask = "add"\nevery = "1d"\nkwargs = { a = 1, b = 2 }\n'
    )
    done = project.enqueue("add", "--a", "1", "--b", "2", description="done")
    failed = project.enqueue("fail-always", description="fails")
    burst = project.rqjobs("worker", "--burst")
    assert burst.returncode == 0, burst.stderr
    assert burst.stdout == "" and "Job OK" in burst.stderr  # the worker's log is for people: stderr
    waiting = project.enqueue("add", "--a", "5", "--b", "5", description="waits")

    # a folder of its own for the embedded redis-server's commands (none is started)
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    (embedded / "rqjobs.toml").write_text(f'database_url = "sqlite:///{embedded / "t.sqlite3"}"\n')

    add = ["enqueue", "add", "--description", "streams", "--a", "1", "--b", "2"]
    cases = [
        Case(["--version"], matches(r"rqjobs \S+\n"), empty),
        Case(["--help"], has("Usage:"), empty),
        Case(add, matches(r"\d+\n"), has("add")),  # the id alone; a note beside it
        Case([*add, "--dry-run"], has("kwargs"), has("nothing was enqueued")),
        Case([*add, "--dry-run", "--json"], is_json, has("nothing was enqueued")),
        Case(["enqueue", "nosuch", "--description", "x"], empty, has("Error:"), 2),
        Case(["tasks"], has("add", "fail-always"), empty),
        Case(["tasks", "--json"], is_json, empty),
        Case(["status"], has("done", "tasks shown"), empty),
        Case(["status", "--failed", "--json"], is_json, empty),
        Case(["show", str(done)], has("finished"), empty),
        Case(["show", str(done), "--json"], is_json, empty),
        Case(["show", "999999"], empty, matches(r"Error: no task 999999\n"), 1),
        Case(["tail", str(done)], matches(rf"\S+ #{done} add finished 100% took \S+\n"), empty),
        Case(["tail", str(done), "--json"], json_lines, empty),
        Case(["stats"], has("finished"), empty),
        Case(["stats", "--json"], is_json, empty),
        Case(["retry", str(failed)], has(f"#{failed}"), empty),
        Case(["retry", "--failed", "--name", "nosuch"], empty, has("no failed tasks to retry")),
        Case(["cancel", str(waiting), "--json"], is_json, empty),
        Case(["cancel", str(done)], has(f"#{done}"), empty, 1),  # finished: not canceled, exit 1
        Case(["prune", "--older-than", "30d", "--dry-run"], empty, has("would delete 0")),
        Case(["prune", "--older-than", "30d", "--json"], is_json, empty),
        Case(["reconcile", "--dry-run"], lambda out: True, has("reconcile:", "changes")),
        Case(["reconcile", "--json"], is_json, has("reconcile:")),
        Case(["db", "upgrade"], empty, has("already at schema")),
        Case(["redis", "status"], has("using", "redis_url"), empty),
        Case(["redis", "stop"], empty, has("Error:", "redis_url is configured"), 2),
        Case(["schedule", "list"], has("daily-add"), empty),
        Case(["schedule", "list", "--json"], is_json, empty),
        Case(["schedule", "run", "daily-add"], matches(r"\d+\n"), has("queued")),
        Case(["schedule", "pause", "daily-add"], empty, has("paused")),
        Case(["schedule", "resume", "daily-add"], empty, has("resumed")),
        Case(["pause", "nosuch-queue"], empty, has("paused nosuch-queue")),
        Case(["pause", "nosuch-queue", "--json"], is_json, has("already paused")),
        Case(["resume", "nosuch-queue"], empty, has("resumed nosuch-queue")),
        Case(["resume", "--all", "--json"], is_json, has("none of them was paused")),
        Case(["workers"], empty, matches(r"no live workers\n")),
        Case(["workers", "--json"], matches(r"\[\]\n"), empty),
        # the embedded Redis's own folder: status is data, stop says what it did
        Case(["--config", str(embedded / "rqjobs.toml"), "redis", "status"], has("not running"), empty),
        Case(["--config", str(embedded / "rqjobs.toml"), "redis", "stop"], empty, matches(r"not running\n")),
        # the long-running commands have tests of their own below (worker) or here (web)
        Case(
            ["worker", "--burst", "--workers", "2"],
            empty,
            has("Starting worker pool", "Job OK"),
            tracebacks=True,
        ),
    ]
    covered = {_command_of(c.args) for c in cases} | {"web"}
    assert _all_commands(project) <= covered, sorted(_all_commands(project) - covered)

    failures = []
    for case in cases:
        result = project.rqjobs(*case.args)
        ok = (
            result.returncode == case.code
            and case.stdout(result.stdout)
            and case.stderr(result.stderr)
            and (case.tracebacks or "Traceback" not in result.stderr)
        )
        if not ok:
            failures.append(
                f"{case.args}: exit {result.returncode}\nstdout={result.stdout!r}\nstderr={result.stderr!r}"
            )
    assert not failures, "\n\n".join(failures)


def test_worker_logs_go_to_stderr_while_it_runs(project: Project) -> None:
    """A long-running worker (and a pool of them): every log line on stderr, stdout empty."""
    task_id = project.enqueue("add", "--a", "1", "--b", "2")
    for extra in ([], ["--workers", "2"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "rqjobs", "worker", *extra],
            cwd=project.root,
            env={**os.environ, **project.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while project.row(task_id).status != "finished" and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert project.row(task_id).status == "finished", err
        assert out == "", out
        assert "Traceback" not in err and err, err
        task_id = project.enqueue("add", "--a", "2", "--b", "2")


def test_web_logs_go_to_stderr(project: Project) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rqjobs", "web", "--port", "0"],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "rqjobs web on http://127.0.0.1:PORT/ (Ctrl+C stops it)"
        match = re.search(r"on (http://\S+/)", line)
        assert match, line
        with urllib.request.urlopen(match.group(1), timeout=30) as response:
            assert response.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert out == "", out
    assert "GET / " in err, err  # the request log: stderr
