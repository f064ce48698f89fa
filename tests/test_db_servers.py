"""End to end on PostgreSQL and MariaDB: the CLI enqueues, a real worker subprocess works,
the rows tell the truth, exactly as on the SQLite default."""

from __future__ import annotations

import json

from tests.conftest import Project
from tests.support.databases import ServerDatabase


def test_worker_on_a_database_server(project: Project, server_db: ServerDatabase) -> None:  # noqa: F811
    project.write_config(
        database_url=server_db.url_string(), redis_url=project.redis.url, tasks_modules=["sample_tasks"]
    )
    words = project.enqueue("count-words", "--text", "to be or not to be — ça va ✓", description="count ✓")
    steps = project.enqueue("progress-steps", "--steps", "2", "--pause-s", "0.2")
    failing = project.enqueue("fail-always", "--message", "disk on fire", "--retries", "1")
    assert (words, steps, failing) == (1, 2, 3)
    project.work()

    row = project.row(words)
    assert row.status == "finished", row.log
    assert row.attempts == 1 and row.progress == 100 and row.description == "count ✓"
    assert row.result["total"] == 8 and row.result["unique"] == 6
    assert row.started_at < row.finished_at  # microseconds kept on every server
    assert project.row(steps).result == {"steps": 2}
    row = project.row(failing)
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.log.count("RuntimeError: disk on fire") == 2

    listed = json.loads(project.rqjobs("status", "--failed", "--json", check=True).stdout)
    assert [r["id"] for r in listed] == [failing]
    shown = json.loads(project.rqjobs("show", str(words), "--json", check=True).stdout)
    assert shown["status"] == "finished" and shown["worker"]
