"""enqueue_task and `rqjobs enqueue`: the row first, then the job; refusals write nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from rqjobs.exceptions import EnqueueFailed, InvalidTaskArguments, UnknownTask
from tests.conftest import Project


def count_rows(project: Project) -> int:
    """Rows in the project's database, read with a fresh connection (0 if no database yet)."""
    db = project.root / "tasks.sqlite3"
    if not db.exists():
        return 0
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            has_table = conn.execute(text("SELECT name FROM sqlite_master WHERE name='tasks'")).first()
            return conn.execute(text("SELECT count(*) FROM tasks")).scalar_one() if has_table else 0
    finally:
        engine.dispose()


def test_enqueue_task_commits_the_row_and_the_job(project: Project) -> None:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from rqjobs import enqueue_task

    runtime = project.runtime()
    import sample_tasks  # type: ignore[import-not-found]

    record = enqueue_task(sample_tasks.add, 1, b=2, description="  add them  ", runtime=runtime)
    assert record.status == "queued"
    assert record.description == "add them"
    assert record.args == [1] and record.kwargs == {"b": 2}
    row = project.row(record.id)
    assert row.status == "queued" and row.name == "add"
    job = Job.fetch(str(record.id), connection=runtime.redis, serializer=JSONSerializer)
    assert job.func_name == "sample_tasks.add"
    assert job.args == [1] and job.kwargs == {"b": 2}
    assert job.timeout == 180
    assert job.description == "add them"


def test_enqueue_by_name_with_options(project: Project) -> None:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from rqjobs import enqueue_task

    runtime = project.runtime()
    record = enqueue_task(
        "fail-always",
        description="x",
        queue="low",
        timeout_s=7,
        retries=3,
        retry_interval_s=[1, 2],
        runtime=runtime,
    )
    row = project.row(record.id)
    assert (row.queue, row.timeout_s, row.max_retries, row.retry_intervals) == ("low", 7, 3, [1, 2])
    job = Job.fetch(str(record.id), connection=runtime.redis, serializer=JSONSerializer)
    assert (
        job.origin == "low" and job.timeout == 7 and job.retries_left == 3 and job.retry_intervals == [1, 2]
    )


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda e: e("add", 1, 2, description=""), InvalidTaskArguments),
        (lambda e: e("add", 1, 2, description="   "), InvalidTaskArguments),
        (lambda e: e("no-such-task", description="x"), UnknownTask),
        (lambda e: e("add", 1, description="x"), InvalidTaskArguments),  # missing b
        (lambda e: e("add", 1, 2, 3, description="x"), InvalidTaskArguments),
        (lambda e: e("add", 1, object(), description="x"), InvalidTaskArguments),  # not JSON
        (lambda e: e("add", 1, 2, description="x", timeout_s=0), InvalidTaskArguments),
        (lambda e: e("add", 1, 2, description="x", retries=-1), InvalidTaskArguments),
    ],
)
def test_refused_calls_write_no_row(project: Project, call, error) -> None:
    from rqjobs import enqueue_task

    runtime = project.runtime()
    with pytest.raises(error):
        call(lambda *a, **k: enqueue_task(*a, runtime=runtime, **k))
    assert count_rows(project) == 0
    assert ValueError in error.__mro__  # empty description etc. are ValueErrors for Python callers


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "add", "--a", "1", "--b", "2"],  # no description
        ["enqueue", "add", "--description", "", "--a", "1", "--b", "2"],
        ["enqueue", "add", "--description", "  ", "--a", "1", "--b", "2"],
        ["enqueue", "nope", "--description", "x"],
        ["enqueue", "add", "--description", "x", "--a", "one", "--b", "2"],
        ["enqueue", "add", "--description", "x", "--a", "1"],
        ["enqueue", "add", "--description", "x", "--a", "1", "--b", "2", "--bogus", "3"],
        ["enqueue", "add", "--description", "x", "--kwargs", "{not json", "--a", "1", "--b", "2"],
        ["enqueue", "add", "--description", "x", "--kwargs", "[1]", "--a", "1", "--b", "2"],
        ["enqueue", "add", "--description", "x", "--a", "1", "--b", "2", "--timeout", "soon"],
        ["enqueue", "add", "--description", "x", "--a", "1", "--b", "2", "--retries", "-2"],
        ["enqueue", "add", "--description", "x", "--a", "1", "--b", "2", "--timeout", "99999999999999999999"],
        ["enqueue", "add", "--description", "x", "--a", "1", "--b", "2", "--retries", "99999999999999999999"],
        [
            "enqueue",
            "add",
            "--description",
            "x",
            "--a",
            "1",
            "--b",
            "2",
            "--kwargs",
            '{"a": 5}',
        ],  # given twice
        ["--redis-url", "notaurl", "enqueue", "add", "--description", "x", "--a", "1", "--b", "2"],
        ["--database-url", "bogus://x", "enqueue", "add", "--description", "x", "--a", "1", "--b", "2"],
        ["enqueue", "count-words", "--description", "x"],  # the task's own validation
        ["enqueue", "count-words", "--description", "x", "--path", "/no/such/file"],
    ],
)
def test_bad_cli_input_exits_2_and_writes_no_row(project: Project, args: list[str]) -> None:
    result = project.rqjobs(*args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()
    assert count_rows(project) == 0


def test_cli_prints_the_id_alone_on_stdout(project: Project) -> None:
    result = project.rqjobs("enqueue", "add", "--description", "sum", "--a", "2", "--b", "3", check=True)
    task_id = int(result.stdout)
    assert result.stdout == f"{task_id}\n"
    row = project.row(task_id)
    assert row.kwargs == {"a": 2, "b": 3} and row.description == "sum"


def test_cli_kwargs_json_for_other_parameters(project: Project) -> None:
    task_id = project.enqueue("add", "--kwargs", json.dumps({"a": 5, "b": 6}))
    project.work()
    assert project.row(task_id).result == {"result": 11}


def test_redis_down_at_enqueue_fails_fast_and_fails_the_row(project: Project, tmp_path: Path) -> None:
    project.write_config(
        database_url=f"sqlite:///{project.root / 'tasks.sqlite3'}",
        redis_url="redis://:hunter2@127.0.0.1:1/0",
        tasks_modules=["sample_tasks"],
    )
    started = time.monotonic()
    result = project.rqjobs("enqueue", "add", "--description", "doomed", "--a", "1", "--b", "2")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Redis is unreachable" in result.stderr
    assert "hunter2" not in result.stderr and "***" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 15
    rows = project.store().find(limit=None)
    assert len(rows) == 1
    assert rows[0].status == "failed"
    assert "could not put the job in Redis" in rows[0].log
    assert "hunter2" not in rows[0].log


def test_enqueue_failed_error_for_python_callers(project: Project) -> None:
    from rqjobs import enqueue_task

    project.write_config(
        database_url=f"sqlite:///{project.root / 'tasks.sqlite3'}",
        redis_url="redis://127.0.0.1:1/0",
        tasks_modules=["sample_tasks"],
    )
    runtime = project.runtime()
    with pytest.raises(EnqueueFailed):
        enqueue_task("add", 1, 2, description="x", runtime=runtime)
    (row,) = runtime.store.find(limit=None)
    assert row.status == "failed"


def test_decorated_function_called_directly_is_a_plain_call(project: Project) -> None:
    project.runtime()
    import sample_tasks  # type: ignore[import-not-found]

    assert sample_tasks.add(2, 3) == 5
    assert sample_tasks.echo_dict("x") == {"echo": "x"}
    assert count_rows(project) == 0
