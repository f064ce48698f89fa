"""Bulk enqueue (issue 14): ``enqueue_many`` and ``rqjobs enqueue NAME --from-jsonl FILE``.

All rows in one transaction, all jobs in one Redis pipeline, every item checked first:
one bad item refuses the batch with its place ("item 3", "line 7"), nothing written.
Runs on every configured database with real burst workers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rqjobs.exceptions import EnqueueFailed, InvalidInput
from tests.conftest import TESTS_DIR, Project

UNIQUE_TASKS = TESTS_DIR / "support" / "unique_tasks.py"


@pytest.fixture
def db_project(project: Project, db_url: str) -> Project:
    """The test project, its rows in each configured database in turn."""
    assert project.redis is not None
    shutil.copy(UNIQUE_TASKS, project.root / "unique_tasks.py")
    project.write_config(
        database_url=db_url,
        redis_url=project.redis.url,
        tasks_modules=["sample_tasks", "unique_tasks"],
    )
    return project


def queued_jobs(project: Project, queue: str = "default") -> int:
    assert project.redis is not None
    return int(project.redis.client().llen(f"rq:queue:{queue}"))


def test_enqueue_many_writes_every_row_in_order_and_workers_run_them(db_project: Project) -> None:
    from rqjobs import enqueue_many

    runtime = db_project.runtime()
    items = [{"a": i, "b": 1000} for i in range(1500)]  # more than one multi-row INSERT batch
    records = enqueue_many("add", items, description="bulk", queue="bulk", retries=2, runtime=runtime)
    assert len(records) == 1500 and not any(r.existing for r in records)
    ids = [r.id for r in records]
    assert ids == sorted(ids) and len(set(ids)) == 1500
    rows = {r.id: r for r in runtime.store.get_many(ids)}
    for item, record in zip(items, records, strict=True):
        row = rows[record.id]
        assert row == record
        assert row.kwargs == item and row.status == "queued" and row.queue == "bulk" and row.max_retries == 2
    assert queued_jobs(db_project, "bulk") == 1500
    assert db_project.redis is not None
    listed = db_project.redis.client().lrange("rq:queue:bulk", 0, -1)
    assert [int(x) for x in listed] == ids  # pushed in the rows' order
    # a smaller batch is run by a real worker (1500 forks would only make the test slow)
    small = enqueue_many("add", [{"a": i, "b": 1} for i in range(20)], description="run", runtime=runtime)
    db_project.work()
    done = runtime.store.get_many([r.id for r in small])
    assert [r.result for r in done] == [{"result": i + 1} for i in range(20)]
    assert {r.status for r in done} == {"finished"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"a": "x", "b": 1}, "item 3: "),
        ({"a": 1}, "item 3: add: missing a required argument"),
        ({"a": 1, "b": 2, "c": 3}, "item 3: "),
        ([1, 2], "item 3: the arguments must be an object"),
    ],
)
def test_one_bad_item_refuses_the_batch(project: Project, bad: object, message: str) -> None:
    from rqjobs import enqueue_many

    runtime = project.runtime()
    items = [{"a": 1, "b": 2}, {"a": 2, "b": 3}, bad, {"a": 4, "b": 5}]
    with pytest.raises(InvalidInput) as caught:
        enqueue_many("add", items, description="bulk", runtime=runtime)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert runtime.store.find(limit=None) == [] and queued_jobs(project) == 0


def test_from_jsonl_prints_the_ids_and_a_count(project: Project) -> None:
    lines = ['{"a": 1, "b": 2}', "", '{"a": 3, "b": 4}', "   ", '{"b": 6, "a": 5}', ""]
    (project.root / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    result = project.rqjobs("enqueue", "add", "-d", "from a file", "--from-jsonl", "jobs.jsonl")
    assert result.returncode == 0, result.stderr
    ids = [int(line) for line in result.stdout.splitlines()]
    assert len(ids) == 3 and ids == sorted(ids)
    assert "enqueued 3 tasks of add" in result.stderr
    project.work()
    assert [project.row(i).result for i in ids] == [{"result": 3}, {"result": 7}, {"result": 11}]


def test_from_jsonl_reads_stdin(project: Project) -> None:
    feed = "".join(json.dumps({"a": i, "b": i}) + "\n" for i in range(20))
    result = subprocess.run(
        [sys.executable, "-m", "rqjobs", "enqueue", "add", "-d", "piped", "--from-jsonl", "-"],
        cwd=project.root,
        env={**os.environ, **project.env},
        input=feed,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 20 and "enqueued 20 tasks" in result.stderr
    assert queued_jobs(project) == 20


@pytest.mark.parametrize(
    ("line7", "message"),
    [
        ('{"a": 1, "b": "two"}', "line 7: "),
        ('{"a": 1, "b": 2', "line 7: not valid JSON"),
        ("[1, 2]", "line 7: a line must be a JSON object"),
        ('{"a": 1, "b": 2, "zzz": 0}', "line 7: "),
    ],
)
def test_one_bad_line_refuses_the_file(project: Project, line7: str, message: str) -> None:
    lines = ['{"a": 1, "b": 2}'] * 4 + [""] + ['{"a": 1, "b": 2}'] + [line7] + ['{"a": 1, "b": 2}'] * 3
    (project.root / "jobs.jsonl").write_text("\n".join(lines) + "\n")
    result = project.rqjobs("enqueue", "add", "-d", "bad file", "--from-jsonl", "jobs.jsonl")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert project.store().find(limit=None) == [] and queued_jobs(project) == 0


@pytest.mark.parametrize(
    "extra",
    [["--a", "1"], ["--unique-key", "k"], ["--in", "10m"], ["--kwargs", "{}"]],
)
def test_from_jsonl_refuses_arguments_on_the_command_line(project: Project, extra: list[str]) -> None:
    (project.root / "jobs.jsonl").write_text('{"a": 1, "b": 2}\n')
    result = project.rqjobs("enqueue", "add", "-d", "x", "--from-jsonl", "jobs.jsonl", *extra)
    assert result.returncode == 2 and "--from-jsonl takes every task's arguments" in result.stderr
    assert project.store().find(limit=None) == []


def test_from_jsonl_missing_or_empty_file_exits_2(project: Project) -> None:
    missing = project.rqjobs("enqueue", "add", "-d", "x", "--from-jsonl", "nope.jsonl")
    assert missing.returncode == 2 and "cannot read nope.jsonl" in missing.stderr
    (project.root / "blank.jsonl").write_text("\n  \n")
    blank = project.rqjobs("enqueue", "add", "-d", "x", "--from-jsonl", "blank.jsonl")
    assert blank.returncode == 2 and "no tasks" in blank.stderr


def test_from_jsonl_dry_run_checks_and_writes_nothing(project: Project) -> None:
    (project.root / "jobs.jsonl").write_text('{"a": 1, "b": 2}\n{"a": 3, "b": 4}\n')
    result = project.rqjobs("enqueue", "add", "-d", "x", "--from-jsonl", "jobs.jsonl", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plans = json.loads(result.stdout)
    assert [p["kwargs"] for p in plans] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert "2 lines checked" in result.stderr
    assert project.store().find(limit=None) == [] and queued_jobs(project) == 0


def test_redis_down_fails_every_row_of_the_batch(project: Project) -> None:
    from rqjobs import enqueue_many

    project.write_config(
        database_url=f"sqlite:///{project.root / 'tasks.sqlite3'}",
        redis_url="redis://127.0.0.1:1/0",
        tasks_modules=["sample_tasks"],
    )
    runtime = project.runtime()
    with pytest.raises(EnqueueFailed, match="Redis is unreachable"):
        enqueue_many("add", [{"a": i, "b": i} for i in range(5)], description="doomed", runtime=runtime)
    rows = runtime.store.find(limit=None)
    assert len(rows) == 5 and {r.status for r in rows} == {"failed"}
    assert all("could not put the job in Redis" in (r.log or "") for r in rows)


def test_redis_down_fails_the_file_from_the_cli(project: Project) -> None:
    project.write_config(
        database_url=f"sqlite:///{project.root / 'tasks.sqlite3'}",
        redis_url="redis://127.0.0.1:1/0",
        tasks_modules=["sample_tasks"],
    )
    (project.root / "jobs.jsonl").write_text('{"a": 1, "b": 2}\n{"a": 3, "b": 4}\n')
    result = project.rqjobs("enqueue", "add", "-d", "x", "--from-jsonl", "jobs.jsonl")
    assert result.returncode == 1 and "Redis is unreachable" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert {r.status for r in project.store().find(limit=None)} == {"failed"}


def test_unique_items_return_live_rows_instead_of_new_ones(db_project: Project, tmp_path: Path) -> None:
    from rqjobs import enqueue_many, enqueue_task

    runtime = db_project.runtime()
    live = enqueue_task("sync-account", 1, description="already there", runtime=runtime)
    items = [{"account": 1}, {"account": 2}, {"account": 2, "full": False}, {"account": 3}]
    records = enqueue_many("sync-account", items, description="bulk", runtime=runtime)
    assert [r.existing for r in records] == [True, False, True, False]
    assert records[0].id == live.id and records[2].id == records[1].id
    assert len(runtime.store.find(limit=None)) == 3
    assert queued_jobs(db_project) == 3
    # the CLI prints every line's id, the live ones included, and says which were there
    (tmp_path / "more.jsonl").write_text('{"account": 3}\n{"account": 4}\n')
    result = db_project.rqjobs(
        "enqueue", "sync-account", "-d", "more", "--from-jsonl", str(tmp_path / "more.jsonl")
    )
    assert result.returncode == 0, result.stderr
    printed = [int(x) for x in result.stdout.split()]
    assert printed[0] == records[3].id and printed[1] not in {r.id for r in records}
    assert f"enqueued 1 task of sync-account; 1 already queued (#{records[3].id})" in result.stderr
    db_project.work()
    assert runtime.store.counts_by_status()["finished"] == 4
    again = enqueue_many("sync-account", [{"account": 1}], description="after", runtime=runtime)
    assert not again[0].existing and again[0].id != live.id
