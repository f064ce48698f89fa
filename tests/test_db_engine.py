"""Engine set-up: SQLite's pragmas and locking, and connections that never cross a fork."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import traceback
import warnings
from pathlib import Path

from sqlalchemy import text

from rqjobs import defaults
from rqjobs.store.engine import forget_engines, get_engine
from rqjobs.store.repository import TaskStore


def _insert(store: TaskStore, name: str) -> int:
    return store.insert(name=name, description=name, queue="default", args=[], kwargs={}, timeout_s=60).id


def test_sqlite_runs_in_wal_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'tasks.sqlite3'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == int(
            defaults.SQLITE_BUSY_TIMEOUT_S * 1000
        )
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    assert (tmp_path / "tasks.sqlite3-wal").exists()


def test_sqlite_writer_waits_for_the_lock_and_reader_does_not(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    store = TaskStore(get_engine(f"sqlite:///{path}"), retry_s=0)
    first = _insert(store, "first")

    # another process's writer holds the write lock for a while
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE tasks SET progress = 7 WHERE id = ?", (first,))
    written: list[object] = []

    def writer() -> None:
        try:
            written.append(_insert(store, "second"))  # BEGIN IMMEDIATE: waits, then succeeds
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            written.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    # readers are never blocked by a writer in WAL mode: this returns while the lock is held
    assert store.get(first).progress == 0
    assert [r.name for r in store.find(limit=None)] == ["first"]
    thread.join(0.5)
    assert thread.is_alive() and not written, f"the writer did not wait for the lock: {written}"
    holder.execute("COMMIT")
    thread.join(timeout=60)
    assert len(written) == 1 and isinstance(written[0], int), written
    assert store.get(first).progress == 7 and store.get(written[0]).name == "second"  # type: ignore[arg-type]
    holder.close()


def _child_work(url: str, rounds: int) -> int:
    """In the forked child: use the inherited engine as a worker's horse does."""
    try:
        store = TaskStore(get_engine(url), retry_s=0)
        for n in range(rounds):
            task_id = _insert(store, f"child-{n}")
            assert store.mark_running(task_id, f"child:{os.getpid()}")
            assert store.mark_finished(task_id, {"n": n, "by": "child"})
            assert store.get(task_id).status == "finished"
        forget_engines()  # a child's clean-up must not close the parent's connections
        gc.collect()
        return 0
    except BaseException:
        traceback.print_exc()
        return 1


def test_forked_child_and_parent_both_keep_working(db_url: str) -> None:  # noqa: F811
    rounds = 25
    store = TaskStore(get_engine(db_url), retry_s=0)
    before = _insert(store, "parent-before")  # the parent's pool now holds a live connection
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (Python 3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        os._exit(_child_work(db_url, rounds))
    parent_ids = []
    for n in range(rounds):  # at the same time as the child
        task_id = _insert(store, f"parent-{n}")
        assert store.mark_running(task_id, "parent:1")
        assert store.mark_finished(task_id, {"n": n, "by": "parent"})
        parent_ids.append(task_id)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child failed (see captured stderr)"

    # the parent's engine still works after the child used and cleaned up its own
    after = _insert(store, "parent-after")
    rows = store.find(limit=None)
    assert len(rows) == 2 * rounds + 2
    assert {r.id for r in rows} >= {before, after, *parent_ids}
    finished = [r for r in rows if r.status == "finished"]
    assert len(finished) == 2 * rounds
    assert sorted(r.result["n"] for r in finished if r.result["by"] == "child") == list(range(rounds))
    assert all(r.name.startswith(r.result["by"]) for r in finished)
