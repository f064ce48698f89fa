"""A database server that stops answering while its connections stay open (issue 11).

The TCP proxy's ``freeze()`` is a SIGSTOPped server as a client sees it: the kernel still
completes handshakes and ACKs, nothing is answered. keepalives and tcp_user_timeout see a
healthy connection; what bounds a call is the retry wrapper's deadline (rqjobs.store.watchdog).

What must hold, on PostgreSQL and MariaDB:

* a row read or write gives up at its deadline (``db_retry_s``, plus a connect timeout at
  most) while the server is still frozen, with a clear error, and works again after;
* a worker whose database freezes does not take the queue and fail it: the job it took
  goes back unrun, it says ``store failing`` in its worker-state key, and another worker
  (whose database answers) runs the job;
* a worker whose main loop is stuck in a database call stops vouching for itself, so
  another worker's reconcile re-queues the job it was watching; once the call gives up,
  the stuck worker vouches again.

The stalls measured are printed (run with -s); they are not asserted as times.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from rqjobs.exceptions import DatabaseError
from rqjobs.hostpid import host_pid
from rqjobs.keys import liveness_key, worker_state_key
from rqjobs.store.engine import get_engine
from rqjobs.store.repository import TaskStore
from tests.conftest import Project, wait_for
from tests.faults import kill_session, stop
from tests.support.databases import ServerDatabase
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def proxy(server_db: ServerDatabase) -> Iterator[TcpProxy]:
    upstream = server_db.url
    proxy = TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432).start()
    try:
        yield proxy
    finally:
        proxy.close()


def _proxied_url(proxy: TcpProxy, database: ServerDatabase, connect_timeout_s: int = 2) -> str:
    # a short connect timeout (the URL's wins over the default 10 s): a new connection to the
    # frozen server gives up quickly too
    return f"{proxy.url_for(database.url_string())}?connect_timeout={connect_timeout_s}"


def _direct_store(database: ServerDatabase) -> TaskStore:
    return TaskStore(get_engine(database.url_string()), retry_s=5)


def _configure(project: Project, url: str, **extra: object) -> None:
    project.write_config(
        database_url=url,
        redis_url=project.redis.url,  # type: ignore[union-attr]
        tasks_modules=["sample_tasks"],
        reconcile_interval_s=1.0,
        reconcile_grace_s=2.0,
        **extra,
    )


def test_a_row_call_to_a_frozen_server_gives_up_at_its_deadline(
    proxy: TcpProxy,
    server_db: ServerDatabase,
) -> None:
    store = TaskStore(get_engine(_proxied_url(proxy, server_db)), retry_s=3)
    task = store.insert(name="add", description="d", queue="default", args=[], kwargs={}, timeout_s=5)
    store.get(task.id)  # a pooled connection, idle when the server freezes
    proxy.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(
            DatabaseError, match="the task database is unreachable: could not read task"
        ) as info:
            store.get(task.id)
        stall_s = time.monotonic() - started
        assert "no answer within" in str(info.value)
        print(
            f"\n{server_db.backend}: a read of a frozen server gave up after {stall_s:.1f} s (db_retry_s 3)"
        )
        assert proxy.frozen  # it gave up by itself: the server never answered
    finally:
        proxy.thaw()
    assert store.get(task.id).id == task.id  # a new connection once the server answers


def _start(project: Project, log_name: str, env: dict[str, str] | None = None, *args: str):  # type: ignore[no-untyped-def]
    saved = project.env
    project.env = {**saved, **(env or {})}
    try:
        return project.start_worker(*args, log_name=log_name)
    finally:
        project.env = saved


def test_a_frozen_database_pauses_the_worker_and_leaves_the_job_to_others(
    project: Project,
    proxy: TcpProxy,
    server_db: ServerDatabase,
) -> None:
    direct = {"RQJOBS_DATABASE_URL": server_db.url_string()}
    _configure(project, _proxied_url(proxy, server_db), db_retry_s=3, worker_liveness_ttl_s=6.0)
    project.env = direct
    project.rqjobs("db", "upgrade", check=True)
    project.env = {}
    redis = project.redis.client()  # type: ignore[union-attr]
    worker_a = _start(project, "a.log")
    try:
        label_a = host_pid(worker_a.pid)
        wait_for(lambda: redis.exists(liveness_key(label_a)), timeout=60, message="worker A's liveness key")
        proxy.freeze()
        project.env = direct  # the test (and worker B) reach the database directly
        task_id = project.enqueue("add", "--a", "2", "--b", "3", description="while A's database is frozen")
        frozen_at = time.monotonic()
        state = wait_for(
            lambda: redis.get(worker_state_key(label_a)), timeout=60, message="A to say its store is failing"
        )
        paused_after_s = time.monotonic() - frozen_at
        assert state == b"store failing", (project.root / "a.log").read_text()
        # the job A took went back unrun; its row still waits
        wait_for(
            lambda: str(task_id).encode() in redis.lrange("rq:queue:default", 0, -1), message="the job back"
        )
        assert _direct_store(server_db).get(task_id).status == "queued"
        assert redis.exists(liveness_key(label_a))  # paused, not stuck: it still vouches
        log_a = (project.root / "a.log").read_text()
        assert "the task database is failing" in log_a and "goes back to its queue unrun" in log_a
        print(f"\n{server_db.backend}: A paused {paused_after_s:.1f} s after the job was enqueued")

        project.work()  # worker B, database reachable: runs the job A left
        row = _direct_store(server_db).get(task_id)
        assert (row.status, row.result, row.attempts) == ("finished", {"result": 5}, 1)
        proxy.thaw()
        wait_for(lambda: not redis.exists(worker_state_key(label_a)), timeout=60, message="A to resume")
        assert "the task database answers again" in (project.root / "a.log").read_text()
    finally:
        proxy.thaw()
        project.env = {}
        stop(worker_a)
        kill_session(worker_a)


def test_a_worker_stuck_on_a_frozen_database_is_reconciled_by_another(
    project: Project,
    proxy: TcpProxy,
    server_db: ServerDatabase,
) -> None:
    direct = {"RQJOBS_DATABASE_URL": server_db.url_string()}
    retry_s = 20.0
    _configure(project, _proxied_url(proxy, server_db), db_retry_s=retry_s, worker_liveness_ttl_s=3.0)
    project.env = direct
    project.rqjobs("db", "upgrade", check=True)
    marker = project.root / "horse.pid"
    task_id = project.enqueue(
        "sleep-for",
        "--seconds",
        "4",
        "--marker",
        str(marker),
        "--retries",
        "1",
        description="its worker gets stuck",
    )
    project.env = {}
    redis = project.redis.client()  # type: ignore[union-attr]
    worker_a = _start(project, "a.log")
    worker_b = None
    try:
        label_a = host_pid(worker_a.pid)
        store = _direct_store(server_db)
        wait_for(lambda: store.get(task_id).status == "running", timeout=60, message="A to start the task")
        wait_for(lambda: marker.exists() and marker.read_text(), message="A's work horse")
        horse = int(marker.read_text())
        proxy.freeze()
        os.kill(horse, signal.SIGKILL)  # A's main loop now records that death: a frozen call
        killed_at = time.monotonic()
        wait_for(
            lambda: (redis.get(worker_state_key(label_a)) or b"").startswith(b"stuck"),
            timeout=30,
            message="A's beacon to say its main loop is stuck",
        )
        worker_b = _start(project, "b.log", direct, "--no-scheduler")
        # B's reconcile sees A's key gone and A stuck: the run is released, the retry runs on B
        row = wait_for(
            lambda: (r := store.get(task_id)).status == "finished" and r,
            timeout=90,
            message="B to reconcile A's run and finish the task",
        )
        assert row.attempts == 2
        assert "main loop is stuck" in row.log, row.log
        # still frozen: A's call gave up at its deadline and A vouches for itself again
        wait_for(lambda: redis.exists(liveness_key(label_a)), timeout=retry_s + 60, message="A to move again")
        stall_s = time.monotonic() - killed_at
        assert proxy.frozen
        assert worker_a.poll() is None
        print(
            f"\n{server_db.backend}: A's main loop was stuck {stall_s:.1f} s on the frozen database (db_retry_s {retry_s:g})"
        )
    finally:
        proxy.thaw()
        for proc in (worker_a, worker_b):
            if proc is not None:
                stop(proc)
                kill_session(proc)
