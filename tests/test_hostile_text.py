"""User- and job-supplied text is shown literally: no rich markup, no raw control characters."""

from __future__ import annotations

import json

from tests.conftest import Project
from tests.test_cli import cli

HOSTILE = (
    "move logs to [/var/log] nightly [link=http://evil.example]click[/link] \x1b]0;pwned\x07\x1b[2J\u2028end"
)


def _assert_literal(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output and "\u2028" not in output
    assert "[/var/log]" in output
    assert "[link=http://evil.example]click[/link]" in output
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u2028end" in output


def test_status_show_and_tail_show_hostile_text_literally(project: Project) -> None:
    task_id = project.enqueue("echo-dict", "--text", HOSTILE, description=HOSTILE)
    for args in (("status",), ("show", str(task_id))):
        result = cli(project, *args, env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        _assert_literal(result.output)
    project.work()
    shown = cli(project, "show", str(task_id))
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "[/var/log]" in shown.output
    tail = cli(project, "tail", str(task_id), "--interval", "0.05")
    assert tail.exit_code == 0, tail.output
    assert "\x1b" not in tail.output
    # --json is data: unchanged, the text round-trips exactly
    rows = json.loads(cli(project, "status", "--json").output)
    assert rows[0]["description"] == HOSTILE


def test_markup_in_a_description_never_breaks_status_on_a_terminal(project: Project) -> None:
    project.enqueue("add", "--a", "1", "--b", "2", description="see [/docs] and [bold]x")
    result = cli(project, "status", env={"FORCE_COLOR": "1", "NO_COLOR": "", "TERM": "xterm"})
    assert result.exit_code == 0, result.output
    assert "see [/docs] and [bold]x" in result.output


def test_failed_log_with_escape_sequences_is_escaped(project: Project) -> None:
    task_id = project.enqueue("fail-always", "--message", "\x1b[2Jgone [red]x[/red]")
    project.work()
    result = cli(project, "show", str(task_id))
    assert result.exit_code == 0, result.output
    assert "\\x1b[2Jgone [red]x[/red]" in result.output
    assert "\x1b" not in result.output
