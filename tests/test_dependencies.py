"""Dependencies (``--after``): deferred rows, released, canceled and restored with their parents.

The store half runs on SQLite, PostgreSQL and MariaDB (``db_url``); the rest runs real
``rqjobs worker`` processes against the session's private Redis. Faults are real: a
worker SIGKILLed mid-run, a parent run by plain ``rq worker`` (the decorator records the
finish, but no rqjobs worker is there to release the dependents, as when a worker dies
between the two).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rqjobs.exceptions import InvalidDependency, InvalidInput
from rqjobs.store.engine import get_engine
from rqjobs.store.repository import TaskStore
from tests.conftest import Project, wait_for
from tests.faults import FAST_RECONCILE, backdate, kill_session, pid_alive, reconcile, redis_known_for
from tests.helpers import configure
from tests.support.databases import db_url  # noqa: F401  (fixture)


def _columns(description: str) -> dict[str, object]:
    return {
        "name": "add",
        "description": description,
        "queue": "default",
        "args": [],
        "kwargs": {},
        "timeout_s": 30,
    }


def _row(store: TaskStore, description: str = "t", **extra: object) -> int:
    values: dict[str, object] = {
        "name": "add",
        "description": description,
        "queue": "default",
        "args": [],
        "kwargs": {},
        "timeout_s": 30,
    }
    values.update(extra)
    return store.insert(**values).id


# -- the store, on every database ------------------------------------------------------------


def test_store_edges_refusals_and_conditional_moves(db_url: str) -> None:  # noqa: F811
    store = TaskStore(get_engine(db_url), retry_s=5)
    a, b = _row(store, "a"), _row(store, "b")
    child = store.insert_after(
        [b, a, a], name="add", description="c", queue="default", args=[], kwargs={}, timeout_s=30
    )
    assert child.status == "deferred" and child.enqueued_at is None and child.after == (a, b)
    again = store.get(child.id)
    assert again is not None and again.status == "deferred" and again.after == (a, b)
    assert [r.after for r in store.find(statuses=["deferred"])] == [(a, b)]
    assert [r.after for r in store.get_many([a, child.id])] == [(), (a, b)]
    assert store.get(child.id).to_dict()["after"] == [a, b]  # type: ignore[union-attr]
    assert store.children_of(a) == [(child.id, "deferred")]
    assert store.parent_states(child.id) == [(a, "queued"), (b, "queued")]
    assert store.counts_by_status()["deferred"] == 1

    # refused, with nothing written: an unknown parent, a failed one, a canceled one
    before = len(store.find(limit=None))
    with pytest.raises(InvalidDependency, match="names no task: #999"):
        store.insert_after(
            [a, 999], name="add", description="x", queue="default", args=[], kwargs={}, timeout_s=30
        )
    store.mark_running(b, "h:1")
    store.mark_attempt_failed(b, "--- attempt 1 failed ---\nboom\n")
    with pytest.raises(InvalidDependency, match=f"#{b} failed"):
        store.insert_after(
            [a, b], name="add", description="x", queue="default", args=[], kwargs={}, timeout_s=30
        )
    with pytest.raises(InvalidDependency, match=f"#{b} failed"):
        store.check_parents([b])
    assert len(store.find(limit=None)) == before
    assert store.deferred_parent_states() == {child.id: [(a, "queued"), (b, "failed")]}

    # the moves are conditional: of racing settlers, one wins
    wins: list[bool] = []
    threads = [
        threading.Thread(target=lambda: wins.append(store.mark_released(child.id, "--- x ---\n")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, False, False, True]
    assert store.get(child.id).status == "queued"  # type: ignore[union-attr]
    assert not store.mark_dependency_canceled(child.id, "--- y ---\n")  # not deferred any more

    other = store.insert_after(
        [a], name="add", description="d", queue="default", args=[], kwargs={}, timeout_s=30
    )
    assert store.mark_dependency_canceled(other.id, "--- canceled: parent #1 failed at x ---\n")
    canceled = store.get(other.id)
    assert canceled is not None and canceled.status == "canceled" and canceled.finished_at is not None
    # a parent enqueued again after the cancel is found by reconcile's restore query
    assert store.parents_requeued_after_cascade() == []
    assert store.mark_requeued(a, "--- retried ---\n", from_statuses=("queued",))
    assert store.parents_requeued_after_cascade() == [a]
    assert not store.mark_deferred_again(other.id, None, "--- z ---\n")  # not the cancel decided from
    assert store.mark_deferred_again(other.id, canceled.finished_at, "--- z ---\n")
    assert store.get(other.id).status == "deferred"  # type: ignore[union-attr]
    assert store.deferred_without_parents() == []


def test_prune_keeps_a_parent_a_deferred_task_waits_for(db_url: str) -> None:  # noqa: F811
    from datetime import datetime, timedelta, timezone

    store = TaskStore(get_engine(db_url), retry_s=5)
    parent, other, lone = _row(store, "p"), _row(store, "q"), _row(store, "lone")
    for task_id in (parent, lone):
        store.mark_running(task_id, "h:1")
        store.mark_finished(task_id, {"ok": True})
    child = store.insert_after([parent, other], **_columns("c"))
    later = datetime.now(timezone.utc) + timedelta(days=1)
    assert store.delete_older_than(later, dry_run=True) == 1
    assert store.delete_older_than(later) == 1  # the lone row; the parent is kept for the child
    assert store.get(lone) is None and store.get(parent) is not None
    store.mark_canceled(child.id, ("deferred",), "--- canceled ---\n")
    assert store.delete_older_than(later) == 2  # the parent and the (now final) child
    assert store.children_of(parent) == [] and store.parent_states(child.id) == []  # edges gone


def test_a_chain_and_a_cascade_on_each_database(project: Project, db_url: str) -> None:  # noqa: F811
    """The release and the cancel, by real workers, on SQLite, PostgreSQL and MariaDB."""
    configure(project, database_url=db_url)
    a = _enqueue(project, "add", "--a", "1", "--b", "2", description="A")
    b = _enqueue(project, "add", "--a", "3", "--b", "4", after=(a,), description="B")
    bad = _enqueue(project, "fail-always", description="bad")
    c = _enqueue(project, "add", "--a", "5", "--b", "6", after=(b, bad), description="C")
    d = _enqueue(project, "add", "--a", "5", "--b", "6", after=(c,), description="D")
    project.work()
    assert [project.row(i).status for i in (a, b, bad, c, d)] == [
        "finished",
        "finished",
        "failed",
        "canceled",
        "canceled",
    ]
    assert f"parent #{bad} failed" in project.row(c).log
    assert f"parent #{c} was canceled" in project.row(d).log


def test_the_dashboard_shows_and_filters_deferred_tasks(project: Project) -> None:
    from rqjobs.web import create_app

    a = _enqueue(project, "add", "--a", "1", "--b", "2", description="A")
    b = _enqueue(project, "add", "--a", "3", "--b", "4", after=(a,), description="B")
    app = create_app(project.runtime())
    app.testing = True
    client = app.test_client()
    listed = client.get("/tasks", query_string={"q": "status:deferred"}).get_data(as_text=True)
    assert [int(i) for i in re.findall(r'<tr data-task-id="(\d+)"', listed)] == [b]
    overview = client.get("/").get_data(as_text=True)
    assert "status:deferred" in overview and 'status-deferred">deferred' in overview
    page = client.get(f"/tasks/{b}").get_data(as_text=True)
    assert f'href="/tasks/{a}">#{a}</a>' in page  # its parent
    parent_page = client.get(f"/tasks/{a}").get_data(as_text=True)
    assert f'href="/tasks/{b}">#{b}</a>' in parent_page  # its dependent


# -- with real workers ---------------------------------------------------------------------------


def _enqueue(
    project: Project, task: str, *args: str, after: tuple[int, ...] = (), description: str = "t"
) -> int:
    flags = [f"--after={p}" for p in after]
    return project.enqueue(task, *args, *flags, description=description)


def test_a_chain_runs_in_order_in_one_burst(project: Project) -> None:
    a = _enqueue(project, "add", "--a", "1", "--b", "2", description="A")
    b = _enqueue(project, "add", "--a", "3", "--b", "4", after=(a,), description="B")
    c = _enqueue(project, "echo-dict", "--text", "c", after=(b,), description="C")
    assert [project.row(i).status for i in (a, b, c)] == ["queued", "deferred", "deferred"]
    client = project.redis.client()  # type: ignore[union-attr]
    assert not client.exists(f"rq:job:{b}") and not client.exists(f"rq:job:{c}")  # no job yet

    listed = project.rqjobs("status", "--deferred", "--json", check=True)
    assert sorted(r["id"] for r in json.loads(listed.stdout)) == [b, c]
    assert {r["id"]: r["after"] for r in json.loads(listed.stdout)} == {b: [a], c: [b]}
    footer = project.rqjobs("status", check=True).stdout
    assert "2 deferred" in footer and "1 queued" in footer
    shown = project.rqjobs("show", str(b), check=True).stdout
    assert f"#{a} queued" in shown and f"#{c} deferred" in shown  # its parent and its dependent
    shown_json = json.loads(project.rqjobs("show", str(b), "--json", check=True).stdout)
    assert shown_json["after"] == [a] and shown_json["dependents"] == [c]
    stats = json.loads(project.rqjobs("stats", "--json", check=True).stdout)
    assert {t["name"]: t["counts"]["deferred"] for t in stats["tasks"]} == {"add": 1, "echo-dict": 1}
    from rqjobs.cli.render.tail import change_detail

    assert change_detail(project.row(c)) == f"after #{b}"  # what `rqjobs tail` says of it

    project.work()
    rows = [project.row(i) for i in (a, b, c)]
    assert [r.status for r in rows] == ["finished"] * 3
    assert rows[0].finished_at <= rows[1].started_at and rows[1].finished_at <= rows[2].started_at
    assert f"enqueued: parent #{a} finished" in rows[1].log
    assert f"enqueued: parent #{b} finished" in rows[2].log


def test_fan_in_waits_for_every_parent(project: Project) -> None:
    a = _enqueue(project, "add", "--a", "1", "--b", "1", description="A")
    b = project.enqueue("add", "--a", "2", "--b", "2", "--queue", "other", description="B")
    c = _enqueue(project, "add", "--a", "5", "--b", "5", after=(a, b), description="C")
    project.work()  # the default queue only: A runs, B waits on its queue
    assert project.row(a).status == "finished" and project.row(b).status == "queued"
    assert project.row(c).status == "deferred"
    project.work("default", "other")
    assert project.row(b).status == "finished"
    row = project.row(c)
    assert row.status == "finished" and row.result == {"result": 10}
    assert f"parents #{a}, #{b} finished" in row.log


def test_a_parent_that_fails_for_good_cancels_its_dependents_recursively(project: Project) -> None:
    a = _enqueue(project, "fail-always", "--message", "parent broke", description="A")
    b = _enqueue(project, "add", "--a", "1", "--b", "1", after=(a,), description="B")
    c = _enqueue(project, "add", "--a", "1", "--b", "1", after=(b,), description="C")
    project.work()
    assert project.row(a).status == "failed"
    rb, rc = project.row(b), project.row(c)
    assert rb.status == rc.status == "canceled" and rb.attempts == rc.attempts == 0
    assert f"canceled: parent #{a} failed" in rb.log and "parent broke" not in rb.log
    assert f"canceled: parent #{b} was canceled" in rc.log
    assert f"rqjobs retry {a}" in rb.log  # says how to get it back

    # refused, nothing written: a failed parent, an unknown one, --after with --in
    count = len(project.store().find(limit=None))
    refused = project.rqjobs("enqueue", "add", "-d", "x", "--a", "1", "--b", "1", f"--after={a}")
    assert refused.returncode == 2 and f"#{a} failed" in refused.stderr and "Traceback" not in refused.stderr
    unknown = project.rqjobs("enqueue", "add", "-d", "x", "--a", "1", "--b", "1", "--after=9999")
    assert unknown.returncode == 2 and "no task: #9999" in unknown.stderr
    timed = project.rqjobs("enqueue", "add", "-d", "x", "--a", "1", "--b", "1", f"--after={b}", "--in", "1m")
    assert timed.returncode == 2 and "--at/--in" in timed.stderr
    assert len(project.store().find(limit=None)) == count


def test_a_parent_with_a_retry_left_does_not_touch_its_dependents(project: Project) -> None:
    marker = project.root / "flaky.count"
    a = _enqueue(
        project, "flaky", "--marker", str(marker), "--failures", "1", "--retries", "1", description="A"
    )
    b = _enqueue(project, "add", "--a", "2", "--b", "3", after=(a,), description="B")
    project.work()
    ra, rb = project.row(a), project.row(b)
    assert ra.status == "finished" and ra.attempts == 2
    assert rb.status == "finished" and rb.result == {"result": 5} and "canceled" not in rb.log


def test_retrying_a_failed_parent_brings_its_dependents_back(project: Project) -> None:
    marker = project.root / "flaky.count"
    a = _enqueue(project, "flaky", "--marker", str(marker), "--failures", "1", description="A")
    b = _enqueue(project, "add", "--a", "1", "--b", "1", after=(a,), description="B")
    c = _enqueue(project, "add", "--a", "1", "--b", "2", after=(b,), description="C")
    operator_canceled = _enqueue(project, "add", "--a", "0", "--b", "0", after=(a,), description="D")
    project.rqjobs("cancel", str(operator_canceled), check=True)
    project.work()
    assert project.row(a).status == "failed"
    assert project.row(b).status == project.row(c).status == "canceled"

    project.rqjobs("retry", str(a), check=True)
    rb, rc = project.row(b), project.row(c)
    assert rb.status == rc.status == "deferred"
    assert f"deferred again: parent #{a} is queued" in rb.log
    assert f"deferred again: parent #{b} is deferred" in rc.log
    assert project.row(operator_canceled).status == "canceled"  # an operator's cancel stands
    project.work()
    assert [project.row(i).status for i in (a, b, c)] == ["finished"] * 3
    assert project.row(operator_canceled).status == "canceled"


def test_canceling_cascades_and_a_finished_parent_releases_at_once(project: Project) -> None:
    from rqjobs import enqueue_task

    a = _enqueue(project, "add", "--a", "1", "--b", "1", description="A")
    b = _enqueue(project, "add", "--a", "1", "--b", "1", after=(a,), description="B")
    c = _enqueue(project, "add", "--a", "1", "--b", "1", after=(b,), description="C")
    out = project.rqjobs("cancel", str(b), check=True)
    assert "canceled" in out.stdout + out.stderr
    assert project.row(b).status == "canceled" and "was deferred" in project.row(b).log
    assert project.row(c).status == "canceled" and f"parent #{b} was canceled" in project.row(c).log
    project.work()
    assert project.row(a).status == "finished"

    runtime = project.runtime()
    record = enqueue_task("add", 2, 2, description="after a finished one", after=[a], runtime=runtime)
    assert record.status == "queued" and record.after == (a,)  # released at once
    with pytest.raises(InvalidInput, match="whole numbers"):
        enqueue_task("add", 1, 1, description="x", after=["A"], runtime=runtime)
    project.work()
    assert project.row(record.id).status == "finished"


# -- faults: worker deaths, a release that never happened -------------------------------------


@pytest.mark.parametrize("retries", [0, 1], ids=["failed-for-good", "requeued"])
def test_a_parent_killed_mid_run_decides_its_dependents(project: Project, retries: int) -> None:
    configure(project, **FAST_RECONCILE)
    marker = project.root / "horse.pid"
    a = _enqueue(
        project,
        "sleep-for",
        "--seconds",
        "3",
        "--marker",
        str(marker),
        "--retries",
        str(retries),
        description="A",
    )
    b = _enqueue(project, "add", "--a", "1", "--b", "1", after=(a,), description="B")
    doomed = project.start_worker(log_name="doomed.log")
    try:
        wait_for(lambda: marker.exists() and marker.read_text(), message="the parent to start")
        horse = int(marker.read_text())
        marker.unlink()
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
    finally:
        kill_session(doomed)
    wait_for(lambda: not pid_alive(horse), timeout=10, message="the horse to die with its worker")
    redis_known_for(project)
    changes = wait_for(lambda: reconcile(project), timeout=30, interval=0.5, message="reconcile to act")
    moved = {c["task_id"]: c for c in changes}
    if retries == 0:
        assert project.row(a).status == "failed"
        assert moved[b]["to"] == "canceled"  # in the same pass that failed the parent
        assert project.row(b).status == "canceled" and f"parent #{a} failed" in project.row(b).log
    else:
        assert project.row(a).status == "queued" and project.row(b).status == "deferred"
        assert b not in moved
        project.work()
        assert project.row(a).status == "finished" and project.row(a).attempts == 2
        assert project.row(b).status == "finished"


def test_reconcile_releases_what_a_dead_worker_did_not(project: Project) -> None:
    """A parent finished by plain `rq worker`: its row says finished, nobody released B."""
    configure(project, **FAST_RECONCILE)
    a = _enqueue(project, "add", "--a", "1", "--b", "1", description="A")
    b = _enqueue(project, "add", "--a", "2", "--b", "2", after=(a,), description="B")
    # reconcile leaves a deferred row alone while its parent is unfinished: no job is "lost"
    assert reconcile(project) == []
    assert project.row(b).status == "deferred"
    assert not project.redis.client().exists(f"rq:job:{b}")  # type: ignore[union-attr]

    rq_worker = subprocess.run(
        [
            str(Path(sys.executable).parent / "rq"),
            "worker",
            "--burst",
            "-S",
            "rq.serializers.JSONSerializer",
            "--url",
            project.redis.url,
        ],  # type: ignore[union-attr]
        cwd=project.root,
        env={
            **os.environ,
            **project.env,
            "RQJOBS_CONFIG": str(project.config_path),
            "PYTHONPATH": str(project.root),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rq_worker.returncode == 0, rq_worker.stderr
    assert project.row(a).status == "finished"
    assert project.row(b).status == "deferred"  # the parent's worker never released it

    dry = reconcile(project, "--dry-run")
    assert [(c["task_id"], c["to"], c["applied"]) for c in dry] == [(b, "queued", False)]
    assert project.row(b).status == "deferred"
    changes = reconcile(project)
    assert [(c["task_id"], c["from"], c["to"]) for c in changes] == [(b, "deferred", "queued")]
    project.work()
    assert project.row(b).status == "finished" and project.row(b).result == {"result": 4}


def test_redis_losing_its_data_loses_no_dependency(project: Project) -> None:
    """FLUSHALL: the parent's job comes back from its row; the deferred child never had one."""
    configure(project, **FAST_RECONCILE)
    a = _enqueue(project, "add", "--a", "1", "--b", "1", description="A")
    b = _enqueue(project, "add", "--a", "2", "--b", "2", after=(a,), description="B")
    project.redis.client().flushall()  # type: ignore[union-attr]
    backdate(project, [a, b], 60)
    changes = reconcile(project)
    assert [(c["task_id"], c["action"]) for c in changes] == [(a, "enqueued again")]
    assert project.row(b).status == "deferred"
    project.work()
    assert project.row(a).status == project.row(b).status == "finished"


def test_a_deferred_row_holds_its_unique_key(db_url: str) -> None:  # noqa: F811
    """A deferred row is live: a second enqueue under its key (deferred or not) returns it,
    and the key is free again once the row is canceled with its parent."""
    store = TaskStore(get_engine(db_url), retry_s=5)
    parent = _row(store, "parent")
    first = store.insert_after([parent], **_columns("first"), unique_key="k1")
    assert first.status == "deferred" and not first.existing
    again = store.insert_after([parent], **_columns("again"), unique_key="k1")
    assert again.existing and again.id == first.id
    plain, created = store.insert_unique(**_columns("plain"), unique_key="k1")
    assert not created and plain.id == first.id
    assert len(store.find(limit=None)) == 2  # the parent and the one deferred row
    assert store.mark_dependency_canceled(first.id, "--- canceled: parent failed ---\n")
    freed, created = store.insert_unique(**_columns("freed"), unique_key="k1")
    assert created and freed.id != first.id
