"""Task registration: names, clashes and bad definitions are clear errors at once."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from rqjobs.exceptions import TaskDefinitionError, UnknownTask
from rqjobs.tasks.commons import background_task, get_task, registered_tasks


def import_source(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        __import__(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_default_name_and_options(tmp_path: Path) -> None:
    import_source(
        tmp_path,
        "reg_ok",
        """
        from rqjobs import background_task

        @background_task
        def make_report(day: str) -> dict:
            '''Build the daily report.

            More text.'''
            return {}

        @background_task(name="custom-name", queue="low", timeout_s=5, retries=2, retry_interval_s=[1, 5])
        def other() -> None:
            pass
        """,
    )
    spec = get_task("make-report")
    assert spec.path == "reg_ok.make_report" and spec.summary == "Build the daily report."
    custom = get_task("custom-name")
    assert (custom.queue, custom.timeout_s, custom.retries, custom.retry_interval_s) == ("low", 5, 2, [1, 5])
    assert "make-report" in registered_tasks()


def test_two_tasks_with_one_name(tmp_path: Path) -> None:
    with pytest.raises(TaskDefinitionError, match="two tasks are named 'same'"):
        import_source(
            tmp_path,
            "reg_dupe",
            """
            from rqjobs import background_task

            @background_task(name="same")
            def one() -> None:
                pass

            @background_task(name="same")
            def two() -> None:
                pass
            """,
        )


def test_local_function_is_refused() -> None:
    def outer() -> None:
        @background_task
        def inner() -> None:
            pass

    with pytest.raises(TaskDefinitionError, match="top level"):
        outer()


def test_unknown_task_lists_the_known_ones() -> None:
    import rqjobs.tasks  # noqa: F401  (registers the built-ins)

    with pytest.raises(UnknownTask, match="count-words"):
        get_task("no-such-task")
