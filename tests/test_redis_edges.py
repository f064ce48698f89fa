"""Redis at the edges (issue 11): a burst worker with no Redis at all, and the embedded
server stopped under a running worker.

* ``rqjobs worker --burst`` that cannot reach Redis when it starts exits 1 with a clear
  message after one try, bounded by ``redis_socket_timeout_s`` (it used to wait 120 s);
* ``rqjobs redis stop`` refuses (exit 2, nothing stopped) while workers are attached and
  names them; with ``--force`` it stops the server, and the long-running worker starts the
  embedded server again (under the start lock) and goes on working.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_py

from rqjobs.broker import embedded
from rqjobs.hostpid import host_pid
from rqjobs.keys import liveness_key
from tests.conftest import REPO_ROOT, Project, wait_for
from tests.faults import kill_session, stop
from tests.helpers import configure
from tests.support.tcp_proxy import TcpProxy


def test_burst_worker_without_redis_exits_1_at_once(project: Project) -> None:
    # a server that accepts connections and never answers: the worst case (a refused
    # connection fails faster); the proxy's upstream does not matter, it never forwards
    silent = TcpProxy("127.0.0.1", 9).start()
    silent.freeze()
    try:
        configure(project, redis_url=f"redis://127.0.0.1:{silent.port}/0", redis_socket_timeout_s=2.0)
        started = time.monotonic()
        result = project.rqjobs("worker", "--burst", timeout=90)
        took_s = time.monotonic() - started
    finally:
        silent.close()
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Error: cannot reach Redis at redis://127.0.0.1:" in result.stderr, result.stderr
    assert "the burst worker has nothing to work and exits" in result.stderr
    assert "Traceback" not in result.stderr
    print(f"\nburst worker without Redis (socket timeout 2 s) exited 1 after {took_s:.1f} s")


def test_burst_worker_with_redis_refusing_exits_1(project: Project, tmp_path: Path) -> None:
    configure(project, redis_url=f"unix://{tmp_path / 'nobody-listens.sock'}")
    result = project.rqjobs("worker", "--burst", timeout=90)
    assert result.returncode == 1, result.stderr
    assert "Error: cannot reach Redis at unix://" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _rqjobs(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rqjobs", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_redis_stop_refuses_under_workers_and_a_worker_restarts_the_embedded_server(tmp_path: Path) -> None:
    (tmp_path / "sample_tasks.py").write_text((REPO_ROOT / "tests/support/sample_tasks.py").read_text())
    (tmp_path / "rqjobs.toml").write_text(
        'tasks_modules = ["sample_tasks"]\nworker_liveness_ttl_s = 3.0\nreconcile_interval_s = 1.0\n'
    )
    data_dir = tmp_path / ".rqjobs"
    socket_path = embedded.socket_path_for(data_dir)
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "rqjobs", "worker"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        label = host_pid(worker.pid)

        def client() -> redis_py.Redis:
            return redis_py.Redis(unix_socket_path=str(socket_path), socket_timeout=2)

        def worker_key() -> bool:
            try:
                return bool(client().exists(liveness_key(label)))
            except redis_py.RedisError:
                return False

        wait_for(worker_key, timeout=60, message="the worker's liveness key on the embedded server")

        refused = _rqjobs(tmp_path, "redis", "stop")
        assert refused.returncode == 2, refused
        assert refused.stdout == ""
        assert f"1 rqjobs worker is attached to the embedded redis-server ({label})" in refused.stderr
        assert "--force" in refused.stderr and "nothing was stopped" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert embedded.ping(socket_path)

        forced = _rqjobs(tmp_path, "redis", "stop", "--force")
        # a message for people: stderr (stdout is for data)
        assert (forced.returncode, forced.stdout, forced.stderr.strip()) == (0, "", "stopped"), forced
        stopped_at = time.monotonic()
        # the worker notices and starts it again; its liveness key comes back
        wait_for(worker_key, timeout=60, message="the worker to start the embedded server again")
        print(
            f"\nembedded server back, with the worker's key, {time.monotonic() - stopped_at:.1f} s after the stop"
        )
        assert "the embedded redis-server was gone; started it again" in (tmp_path / "worker.log").read_text()

        enqueued = _rqjobs(
            tmp_path, "enqueue", "add", "--description", "after the restart", "--a", "2", "--b", "2"
        )
        assert enqueued.returncode == 0, enqueued
        task_id = enqueued.stdout.strip()

        def finished() -> bool:
            shown = _rqjobs(tmp_path, "status", "--json")
            return (
                shown.returncode == 0 and '"finished"' in shown.stdout and f'"id": {task_id}' in shown.stdout
            )

        wait_for(finished, timeout=60, interval=0.5, message="the worker to run a task after the restart")
    finally:
        stop(worker)
        kill_session(worker)
        log.close()
        if embedded.ping(socket_path):
            embedded.stop(data_dir)
    assert worker.returncode is not None
    assert os.path.exists(data_dir)
