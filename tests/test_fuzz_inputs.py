"""Property-based: generated text, unicode, numbers and JSON at every command's options and at
``enqueue_task``. Never a traceback; exit 0, 1 or 2 only; no row written when the exit is 2.

In-process (typer's CliRunner) with bounded examples, so it stays a few seconds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rqjobs.exceptions import InvalidInput, RqjobsError
from tests.conftest import Project
from tests.test_cli import cli

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

#: text as a user can type it (no NUL: argv cannot carry one), surrogates and controls included
TEXT = st.text(st.characters(blacklist_characters="\x00"), max_size=40) | st.sampled_from(
    [
        "",
        " ",
        "[/x]",
        "[link=http://e]",
        "\x1b[2J",
        "\u2028",
        "-1",
        "nan",
        "inf",
        "1e999",
        "x" * 1200,
        "\ud800",
    ]
)
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    TEXT,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def _count(project: Project) -> int:
    return len(project.store().find(limit=10_000))


def _check(project: Project, args: list[str], before: int) -> None:
    # a lone surrogate is passed as it is: that is what a caller in Python can hand click
    safe = list(args)
    result = cli(project, *safe)
    assert result.exit_code in (0, 1, 2), (safe, result.exit_code, result.output)
    assert "Traceback" not in result.output, (safe, result.output)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), (safe, repr(result.exception))
    if result.exit_code == 2:
        assert _count(project) == before, (safe, result.output)


OPTION_SETS: list[tuple[list[str], dict[str, Any]]] = [
    (["enqueue", "add"], {"--description": TEXT, "--a": NUMBER, "--b": NUMBER, "--queue": TEXT}),
    (["enqueue", "count-words"], {"--description": TEXT, "--text": TEXT, "--top": NUMBER, "--url": TEXT,
                                   "--timeout": NUMBER, "--retries": NUMBER, "--in": TEXT, "--at": TEXT}),
    (["enqueue", "send-mail"], {"--description": TEXT, "--to": TEXT, "--subject": TEXT, "--var": TEXT}),
    (["status"], {"--name": TEXT, "--since": TEXT, "--limit": NUMBER}),
    (["stats"], {"--name": TEXT, "--since": TEXT}),
    (["prune"], {"--older-than": TEXT, "--status": TEXT}),
    (["retry"], {"--name": TEXT}),
]  # fmt: skip


@pytest.mark.parametrize(("command", "options"), OPTION_SETS, ids=[" ".join(c) for c, _ in OPTION_SETS])
def test_every_command_survives_generated_options(
    project: Project, command: list[str], options: dict
) -> None:
    before = _count(project)

    @FUZZ
    @given(st.fixed_dictionaries({}, optional=options))
    def run(values: dict[str, str]) -> None:
        args = list(command)
        for option, value in values.items():
            args += [option, value]
        if command[0] == "prune":
            args.append("--dry-run")
        _check(project, args, _count(project))

    run()
    assert _count(project) >= before


def test_show_cancel_and_kwargs_survive_generated_input(project: Project) -> None:
    @FUZZ
    @given(TEXT, JSON)
    def run(word: str, data: Any) -> None:
        before = _count(project)
        for args in (["show", word], ["cancel", word], ["retry", word]):
            _check(project, args, before)
        try:
            kwargs = json.dumps(data, ensure_ascii=False)
        except (TypeError, ValueError):
            kwargs = repr(data)
        _check(project, ["enqueue", "count-words", "-d", "fuzz", "--kwargs", kwargs], before)
        _check(project, ["enqueue", "echo-dict", "-d", "fuzz", "--kwargs", kwargs], before)

    run()


def test_enqueue_task_raises_only_rqjobs_errors(project: Project) -> None:
    from rqjobs.api import enqueue_task

    runtime = project.runtime()

    @FUZZ
    @given(st.sampled_from(["add", "count-words", "echo-dict", "send-mail", "no-such-task"]), TEXT, JSON)
    def run(task: str, description: str, data: Any) -> None:
        kwargs = data if isinstance(data, dict) else {"text": data}
        before = _count(project)
        try:
            enqueue_task(task, description=description, runtime=runtime, **kwargs)
        except InvalidInput:
            assert _count(project) == before
        except RqjobsError:
            pass
        except TypeError as exc:  # keyword names Python itself refuses (not strings)
            assert "keywords must be strings" in str(exc)

    run()
