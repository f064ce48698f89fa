"""Schema migrations: an older database is upgraded in place with its rows, the models
match the migrations, and every command refuses an outdated schema with a clear message."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from rqjobs.store import schema
from rqjobs.store.engine import create_store_engine, get_engine
from rqjobs.store.models import metadata
from tests.conftest import Project

BASELINE = "0001"


def test_schema_head_is_the_newest_migration() -> None:
    scripts = ScriptDirectory(str(schema.MIGRATIONS_DIR))
    assert scripts.get_heads() == [schema.SCHEMA_HEAD]  # one head, the one the code expects
    chain = [rev.revision for rev in scripts.walk_revisions()]
    assert chain[-1] == BASELINE and chain[0] == schema.SCHEMA_HEAD


def test_models_match_the_migrations(db_url: str) -> None:  # noqa: F811
    engine = get_engine(db_url)  # an empty database, brought to head by the migrations
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diffs = compare_metadata(context, metadata)
        reflected = {c["name"]: c for c in inspect(conn).get_columns("tasks")}
    assert diffs == []
    # Alembic's type comparison overlooks details such as MariaDB's DATETIME(6): compare the
    # DDL each column's type compiles to on this database as well
    dialect = engine.dialect
    for column in metadata.tables["tasks"].columns:
        model_ddl = column.type.compile(dialect=dialect)
        # MariaDB reports INTEGER's display width, which means nothing for storage
        database_ddl = re.sub(
            r"^INTEGER\(\d+\)$", "INTEGER", reflected[column.name]["type"].compile(dialect=dialect)
        )
        assert (column.name, model_ddl) == (column.name, database_ddl)
        assert column.nullable == reflected[column.name]["nullable"], column.name


def _fill_baseline(url: str) -> None:
    """A database as rqjobs 0001 left it, with rows in several states."""
    engine = create_store_engine(url)
    try:
        assert schema.upgrade(engine, BASELINE) == (None, BASELINE)
        rows = [
            (1, "add", "finished", json.dumps({"result": 3}), None, 1, datetime(2026, 1, 2, 3, 4, 5)),
            (2, "fail-always", "failed", None, "--- attempt 1 failed ---\nRuntimeError: boom\n", 1, None),
            (3, "add", "queued", None, None, 0, None),
        ]
        for task_id, name, status, result, log, attempts, finished in rows:
            with engine.begin() as conn:  # ids from the database's own sequence: 1, 2, 3
                conn.execute(
                    text(
                        "INSERT INTO tasks (name, description, queue, args, kwargs, status, progress,"
                        " result, log, attempts, max_retries, timeout_s, created_at, finished_at)"
                        " VALUES (:name, :description, 'default', '[1, 2]', '{}', :status, 0,"
                        " :result, :log, :attempts, 0, 180, :created, :finished)"
                    ),
                    {
                        "name": name,
                        "description": f"old row {task_id} café",  # latin1-safe: MariaDB's db is latin1
                        "status": status,
                        "result": result,
                        "log": log,
                        "attempts": attempts,
                        "created": datetime(2026, 1, 2, 3, 0, 0),
                        "finished": finished,
                    },
                )
    finally:
        engine.dispose()


def test_db_upgrade_keeps_rows_and_outdated_schema_is_refused_clearly(
    project: Project,
    db_url: str,  # noqa: F811
) -> None:
    _fill_baseline(db_url)
    project.write_config(database_url=db_url, redis_url=project.redis.url, tasks_modules=["sample_tasks"])

    # every command that opens the database says what to do: no SQL error, no traceback
    for args in (
        ("status",),
        ("show", "1"),
        ("enqueue", "add", "--description", "new", "--a", "1", "--b", "2"),
        ("worker", "--burst"),
    ):
        result = project.rqjobs(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "run `rqjobs db upgrade`" in result.stderr, (args, result.stderr)
        assert f"schema {BASELINE}" in result.stderr
        assert "Traceback" not in result.stderr and "sqlalchemy" not in result.stderr.lower()
    assert project.redis.client().keys("rq:job:*") == []  # the refused enqueue put nothing in Redis

    result = project.rqjobs("db", "upgrade", check=True)
    assert f"upgraded schema {BASELINE} -> {schema.SCHEMA_HEAD}" in result.stderr
    assert f"already at schema {schema.SCHEMA_HEAD}" in project.rqjobs("db", "upgrade", check=True).stderr

    store = project.store()
    assert schema.current_revision(store.engine) == schema.SCHEMA_HEAD
    indexes = {ix["name"]: ix for ix in inspect(store.engine).get_indexes("tasks")}
    assert "ix_tasks_status_finished" in indexes
    # 0003: one row per (schedule, tick), enforced by the database on the upgraded table
    assert indexes["uq_tasks_schedule_tick"]["unique"]
    assert indexes["uq_tasks_schedule_tick"]["column_names"] == ["schedule", "schedule_tick"]
    assert inspect(store.engine).has_table("schedules")
    rows = {r.id: r for r in store.find(limit=None)}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1].status == "finished" and rows[1].result == {"result": 3}
    assert rows[1].finished_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert rows[2].log.endswith("RuntimeError: boom\n")
    assert all(r.description == f"old row {r.id} café" and r.args == [1, 2] for r in rows.values())

    # the upgraded database works end to end, with text the baseline could not hold
    status = json.loads(project.rqjobs("status", "--json", check=True).stdout)
    assert [r["id"] for r in status] == [3, 2, 1]
    new_id = project.enqueue("echo-dict", "--text", "日本語 🎉", description="after the upgrade ✓")
    assert new_id == 4
    assert store.delete_older_than(datetime.now(timezone.utc), statuses=["queued"]) == 2  # 3 and 4
    new_id = project.enqueue("echo-dict", "--text", "日本語 🎉", description="after the upgrade ✓")
    assert new_id == 5  # ids are not reused after an upgrade either
    project.work()
    row = project.row(new_id)
    assert row.status == "finished" and row.result == {"echo": "日本語 🎉"}
    assert row.description == "after the upgrade ✓"
    assert row.started_at.microsecond or row.finished_at.microsecond  # sub-second times everywhere
    _one_row_per_tick_is_enforced(store)


def _one_row_per_tick_is_enforced(store: Any) -> None:
    """The schedule's claim on an upgraded table: a second row for a tick is refused."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from rqjobs.store.models import tasks_table
    from rqjobs.store.records import row_values
    from rqjobs.store.schedules import ScheduleStore

    tick = datetime(2026, 3, 29, 1, 0, tzinfo=timezone.utc)
    schedules = ScheduleStore(store.engine)
    values = row_values(name="add", description="tick", queue="default", args=[1, 2], kwargs={}, timeout_s=9)
    first = schedules.claim_tick("nightly", tick, values, skip_if_running=True)
    assert first.outcome == "created" and first.record is not None
    again = row_values(name="add", description="tick", queue="default", args=[1, 2], kwargs={}, timeout_s=9)
    assert schedules.claim_tick("nightly", tick, again, skip_if_running=True).outcome == "taken"
    # even a writer that ignores the schedules table cannot add a second row for the tick
    with pytest.raises(IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(insert(tasks_table), {**again, "schedule": "nightly", "schedule_tick": tick})
    rows = store.find(schedules=["nightly"], limit=None)
    assert [(r.id, r.schedule_tick) for r in rows] == [(first.record.id, tick)]


@pytest.mark.parametrize("command", [("status",), ("db", "upgrade")])
def test_unknown_newer_schema_is_refused(project: Project, command: tuple[str, ...]) -> None:
    engine = get_engine(f"sqlite:///{project.root / 'tasks.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    result = project.rqjobs(*command)
    assert result.returncode == 1
    assert "schema 9999" in result.stderr and "newer" in result.stderr
    assert "Traceback" not in result.stderr
