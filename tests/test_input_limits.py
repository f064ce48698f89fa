"""Input refused before any row is written, the same on every database; progress clipped, never fatal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import Project
from tests.helpers import configure
from tests.test_cli import cli
from tests.test_stats import BACKENDS, SERVER_URLS


@pytest.fixture(params=BACKENDS)
def db_project(request: pytest.FixtureRequest, project: Project) -> Iterator[Project]:
    """The project on each database (a fresh database on the servers, dropped afterwards)."""
    from rqjobs.store.engine import forget_engines

    if request.param == "sqlite":
        yield project
        return
    server = make_url(SERVER_URLS[request.param])
    name = f"rqjobs_limits_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        configure(project, database_url=server.set(database=name).render_as_string(hide_password=False))
        assert cli(project, "db", "upgrade").exit_code == 0
        yield project
    finally:
        forget_engines()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()


def _count(project: Project) -> int:
    return len(project.store().find(limit=1000))


@pytest.mark.parametrize(
    "args",
    [
        ("add", "-d", "x" * 1001, "--a", "1", "--b", "2"),
        ("add", "-d", "ok", "--queue", "q" * 201, "--a", "1", "--b", "2"),
        ("add", "-d", "bad \ud800 surrogate", "--a", "1", "--b", "2"),
        ("count-words", "-d", "ok", "--kwargs", '{"text": "a", "top": "abc"}'),
        ("count-words", "-d", "ok", "--kwargs", '{"text": "a", "top": 1e999}'),
        ("count-words", "-d", "ok", "--kwargs", '{"text": "a", "top": NaN}'),
        ("count-words", "-d", "ok", "--kwargs", '{"text": 5}'),
        ("count-words", "-d", "ok", "--kwargs", '{"text": "\\ud800"}'),
        ("echo-dict", "-d", "ok", "--kwargs", '{"text": 123456789012345678901234567890}'),
    ],
    ids=["description-1001", "queue-201", "surrogate", "top-str", "top-overflow", "top-nan", "text-int",
         "text-surrogate", "huge-int"],
)  # fmt: skip
def test_refused_before_the_row_on_every_database(db_project: Project, args: tuple[str, ...]) -> None:
    before = _count(db_project)
    result = cli(db_project, "enqueue", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert _count(db_project) == before


def test_limits_accepted_at_the_edge(db_project: Project) -> None:
    result = cli(db_project, "enqueue", "add", "-d", "é" * 1000, "--queue", "q" * 200, "--a", "1", "--b", "2")
    assert result.exit_code == 0, result.output


def test_long_progress_message_is_clipped_not_fatal(db_project: Project) -> None:
    store: Any = db_project.store()
    record = store.insert(name="add", description="d", queue="default", args=[], kwargs={}, timeout_s=30)
    assert store.mark_running(record.id, "host:1")
    assert store.set_progress(record.id, 50, "m" * 5000 + "\ud800")
    row = store.get(record.id)
    assert len(row.progress_message) == 1000 and row.progress_message.endswith("…")
    assert store.mark_finished(record.id, {"ok": 1}, progress_message="z" * 3000)
    assert len(store.get(record.id).progress_message) == 1000


def test_non_utf8_config_is_a_clear_exit_2(project: Project) -> None:
    project.config_path.write_bytes(b'default_queue = "caf\xe9"\n')
    result = cli(project, "status")
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.output and str(project.config_path) in result.output.replace("\n", "")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("reconcile_interval_s", "nan"),
        ("worker_liveness_ttl_s", "inf"),
        ("redis_socket_timeout_s", "0"),
        ("progress_interval_s", "-1"),
        ("default_timeout_s", "0"),
    ],
)
def test_config_values_range_checked_with_file_and_key(project: Project, key: str, value: str) -> None:
    with project.config_path.open("a") as fh:
        fh.write(f"{key} = {value}\n")
    result = cli(project, "enqueue", "add", "-d", "x", "--a", "1", "--b", "2")
    assert result.exit_code == 2, result.output
    flat = result.output.replace("\n", "")
    assert key in flat and "rqjobs.toml" in flat
    assert not (project.root / "tasks.sqlite3").exists() or _count(project) == 0
