"""The private ``redis-server`` that rqjobs starts on demand (docs/ARCHITECTURE.md, "Layers").

With no ``redis_url`` configured, ``rqjobs enqueue`` and ``rqjobs worker`` in two terminals must
share one Redis with no set-up. So the first command that needs Redis starts a daemonized
``redis-server`` listening on a unix socket inside the data folder (no TCP port, so nothing else
on the machine can reach it), with append-only persistence so queued jobs survive a restart.
Every later command finds it again through the same, deterministic socket path.

Why it is built the way it is:

* The server is daemonized and started in its own session, with stdin/stdout/stderr not
  inherited: it outlives the command that started it, a Ctrl-C to that command's process group
  does not kill it, and ``subprocess.run(..., capture_output=True)`` of that command does not hang
  waiting for a pipe the server would otherwise keep open.
* "ping, else start" runs under an ``fcntl.flock`` on ``<data_dir>/redis.lock``, so two commands
  starting at once start exactly one server. A server whose pid is alive but which does not
  answer yet (loading a large AOF) is waited for, never doubled: two servers on one AOF would
  corrupt it.
* A unix socket path must fit in ``sun_path``; a data folder too deep for that gets a short
  private folder under ``/tmp`` named after a hash of the data folder, so it is still the same
  path for every command.

Only the standard library is imported at module level: redis-py is imported inside the
functions that talk to the server, which keeps ``rqjobs --help`` fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rqjobs import defaults
from rqjobs.broker.redis_binary import find_redis_server, server_argv
from rqjobs.exceptions import EmbeddedRedisError, RedisServerNotFound

if TYPE_CHECKING:
    from redis import Redis

SOCKET_FILE_NAME = "redis.sock"
LOCK_FILE_NAME = "redis.lock"
PID_FILE_NAME = "redis.pid"
LOG_FILE_NAME = "redis.log"

#: how often we look again while waiting for the server to come up or go away
_POLL_INTERVAL_S = 0.02
#: lines of redis.log quoted in an error, enough to show why the server failed
_LOG_TAIL_LINES = 15
#: where the short socket folder goes when the data folder is too deep for a socket path;
#: a fixed path rather than $TMPDIR so that every command computes the same socket path
_FALLBACK_SOCKET_ROOT = Path("/tmp")

_ProbeState = Literal["up", "loading", "down"]


@dataclass(frozen=True)
class EmbeddedRedisStatus:
    """What ``rqjobs redis status`` reports about the embedded server, without starting it."""

    #: the server answers PING on its socket
    running: bool
    #: the server's pid (from INFO when running, else a live pid from the pidfile, e.g. while loading)
    pid: int | None
    socket_path: Path
    data_dir: Path
    log_path: Path
    #: the binary that runs (INFO ``executable``) or would be started; None if none is found
    binary: str | None
    #: ``redis_version`` from INFO when running
    version: str | None = None
    #: keys over all databases when running
    keys: int | None = None


def socket_path_for(data_dir: Path) -> Path:
    """Return the unix socket of the embedded server for ``data_dir``.

    ``<data_dir>/redis.sock`` when it fits in ``defaults.UNIX_SOCKET_MAX_BYTES``; otherwise
    ``/tmp/rqjobs-<uid>-<sha1(data_dir)[:12]>/redis.sock``, whose folder is created private
    (0700) here. The result depends only on the data folder's real path and the user, so every
    command finds the same socket.

    Raises EmbeddedRedisError when the fallback folder exists but is not a private folder owned
    by this user (someone else could otherwise intercept the socket).
    """
    data_dir = _absolute(data_dir)
    preferred = data_dir / SOCKET_FILE_NAME
    if len(os.fsencode(preferred)) <= defaults.UNIX_SOCKET_MAX_BYTES:
        return preferred
    digest = hashlib.sha1(os.fsencode(data_dir), usedforsecurity=False).hexdigest()[:12]
    short_dir = _FALLBACK_SOCKET_ROOT / f"rqjobs-{os.getuid()}-{digest}"
    _make_private_dir(short_dir)
    return short_dir / SOCKET_FILE_NAME


def ping(socket_path: Path, timeout_s: float = 0.5) -> bool:
    """Return True if a Redis server answers PING on ``socket_path``.

    Cheap enough to call before every command: no redis-py import when the socket file does not
    exist, no retries, short timeouts. Any connection problem (including a server still loading
    its data) is False.
    """
    return _probe(socket_path, timeout_s) == "up"


def ensure_running(
    data_dir: Path,
    binary: str | None = None,
    start_timeout_s: float = defaults.EMBEDDED_REDIS_START_TIMEOUT_S,
) -> Path:
    """Make sure the embedded server for ``data_dir`` answers, starting it if needed; return its socket.

    The fast path is one PING. Otherwise the data folder is created, the start lock taken and
    PING tried again (another process may have just started it) before anything is started, so
    concurrent callers start exactly one server. ``binary`` is the configured ``redis_server``
    (see :func:`find_redis_server`). The wait for the lock and the wait for the server to answer
    are each bounded by ``start_timeout_s``.

    Raises RedisServerNotFound when no binary is found and EmbeddedRedisError when the server
    does not answer in time (the message quotes the end of ``redis.log``).
    """
    data_dir = _absolute(data_dir)
    socket_path = socket_path_for(data_dir)
    if ping(socket_path):
        return socket_path
    data_dir.mkdir(parents=True, exist_ok=True)
    with _start_lock(data_dir / LOCK_FILE_NAME, start_timeout_s):
        state = _probe(socket_path)
        if state == "up":
            return socket_path
        deadline = time.monotonic() + start_timeout_s
        if state == "loading" or _live_server_pid(data_dir) is not None:
            # A server exists but does not answer yet (loading a large AOF, or just started by a
            # process that gave up waiting): a second one on the same files would corrupt them.
            _wait_until_up(socket_path, data_dir, deadline, start_timeout_s)
            return socket_path
        executable = find_redis_server(binary)
        _remove_stale_files(socket_path, data_dir)
        _start_server(executable, data_dir, socket_path, deadline, start_timeout_s)
        _wait_until_up(socket_path, data_dir, deadline, start_timeout_s)
    return socket_path


def status(data_dir: Path, binary: str | None = None) -> EmbeddedRedisStatus:
    """Describe the embedded server for ``data_dir`` without starting it.

    ``binary`` is the configured ``redis_server``, used to report which binary would be started
    when the server is not running.
    """
    data_dir = _absolute(data_dir)
    socket_path = socket_path_for(data_dir)
    log_path = data_dir / LOG_FILE_NAME
    info = _server_info(socket_path) if socket_path.exists() else None
    if info is None:
        try:
            executable: str | None = find_redis_server(binary)
        except RedisServerNotFound:
            executable = None
        return EmbeddedRedisStatus(
            running=False,
            pid=_live_server_pid(data_dir),
            socket_path=socket_path,
            data_dir=data_dir,
            log_path=log_path,
            binary=executable,
        )
    keys = sum(
        int(value.get("keys", 0))
        for name, value in info.items()
        if name.startswith("db") and isinstance(value, dict)
    )
    pid = info.get("process_id")
    return EmbeddedRedisStatus(
        running=True,
        pid=int(pid) if pid is not None else None,
        socket_path=socket_path,
        data_dir=data_dir,
        log_path=log_path,
        binary=str(info["executable"]) if info.get("executable") else None,
        version=str(info["redis_version"]) if info.get("redis_version") else None,
        keys=keys,
    )


def stop(data_dir: Path, timeout_s: float = defaults.EMBEDDED_REDIS_STOP_TIMEOUT_S) -> bool:
    """Stop the embedded server for ``data_dir``; return True if one was stopped, False if none ran.

    SHUTDOWN through the socket first: with appendonly on it flushes the AOF, so nothing queued
    is lost. If that is refused or the server does not answer (e.g. still loading), SIGTERM to
    the pid in the pidfile, which Redis also handles as a clean shutdown. Returns once the
    process is gone and the socket no longer answers.

    Raises EmbeddedRedisError if the server is still there after ``timeout_s``.
    """
    data_dir = _absolute(data_dir)
    socket_path = socket_path_for(data_dir)
    deadline = time.monotonic() + timeout_s
    state = _probe(socket_path)
    pid: int | None = None
    shutdown_accepted = False
    if state != "down":
        pid, shutdown_accepted = _shutdown(socket_path, timeout_s)
    if pid is None:
        pid = _live_server_pid(data_dir)
    if state == "down" and pid is None:
        return False
    if not shutdown_accepted and pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    while True:
        gone = (pid is None or not _pid_alive(pid)) and _probe(socket_path) == "down"
        if gone:
            return True
        if time.monotonic() >= deadline:
            raise EmbeddedRedisError(
                f"The embedded redis-server (pid {pid}) did not stop within {timeout_s:g} s."
            )
        time.sleep(_POLL_INTERVAL_S)


# ---------------------------------------------------------------------------------------------
# helpers


def _absolute(data_dir: Path) -> Path:
    """The real absolute path: redis-server chdirs to --dir, and the socket hash must not
    depend on the working directory or on which symlink led to the folder."""
    return Path(data_dir).expanduser().resolve()


def _make_private_dir(path: Path) -> None:
    """Create ``path`` 0700, or accept it only if it already is a private folder of ours."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise EmbeddedRedisError(
            f"{path} is not a private folder owned by you; remove it so rqjobs can put its Redis "
            "socket there."
        )


def _client(socket_path: Path, timeout_s: float) -> Redis:
    """A short-lived client with no retries: these calls must fail fast, not back off."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Redis(
        unix_socket_path=str(socket_path),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _probe(socket_path: Path, timeout_s: float = 0.5) -> _ProbeState:
    """Say "up" if PING answers, "loading" if the server is there but still loading its data."""
    if not os.path.exists(socket_path):
        return "down"
    from redis.exceptions import BusyLoadingError, RedisError

    client = _client(socket_path, timeout_s)
    try:
        client.ping()
    except BusyLoadingError:
        return "loading"
    except (RedisError, OSError):
        return "down"
    finally:
        client.close()
    return "up"


def _server_info(socket_path: Path, timeout_s: float = 0.5) -> dict[str, Any] | None:
    """The whole INFO of the server on ``socket_path``, or None if it does not answer."""
    from redis.exceptions import RedisError

    client = _client(socket_path, timeout_s)
    try:
        return dict(client.info())
    except (RedisError, OSError):
        return None
    finally:
        client.close()


def _shutdown(socket_path: Path, timeout_s: float) -> tuple[int | None, bool]:
    """Ask the server to shut down; return (its pid if it said, whether SHUTDOWN was accepted).

    Redis closes the connection instead of replying to a successful SHUTDOWN, so a connection
    error after sending it is the success case. A server still loading refuses commands with
    BusyLoadingError, which redis-py files under ConnectionError: that one is a refusal.
    """
    from redis.exceptions import BusyLoadingError, RedisError
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = _client(socket_path, timeout_s)
    try:
        pid: int | None = None
        try:
            pid = int(client.info("server")["process_id"])
        except (RedisError, OSError, KeyError, ValueError):
            pass
        try:
            client.execute_command("SHUTDOWN")
        except BusyLoadingError:
            return pid, False
        except RedisConnectionError:
            return pid, True
        except (RedisError, OSError):
            return pid, False
        return pid, False
    finally:
        client.close()


def _read_pidfile(data_dir: Path) -> int | None:
    try:
        text = (data_dir / PID_FILE_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie counts as gone (the server is not our child to reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc (not Linux), or it just exited: signal 0 said it was there
    fields = stat_line.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X")


def _looks_like_redis(pid: int) -> bool:
    """Guard against a stale pidfile whose pid now belongs to another program.

    redis-server rewrites its title to ``<argv0> unixsocket:<path>``, which still names redis.
    Without /proc (not Linux) we cannot tell, and trust the pidfile.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"redis" in cmdline


def _live_server_pid(data_dir: Path) -> int | None:
    """The pid in ``redis.pid`` if that process is alive and looks like redis-server."""
    pid = _read_pidfile(data_dir)
    if pid is None or not _pid_alive(pid) or not _looks_like_redis(pid):
        return None
    return pid


@contextlib.contextmanager
def _start_lock(lock_path: Path, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``; the lock file itself is never deleted.

    Polled rather than blocking, so a holder that hangs (e.g. a stopped process) turns into an
    error after ``timeout_s`` on top of the holder's own start timeout instead of a hang. The
    kernel drops the lock if the holder dies, and the fd is close-on-exec so redis-server never
    inherits it.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + 2 * timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"Another process holds {lock_path} while starting the embedded redis-server; "
                        f"gave up after {2 * timeout_s:g} s."
                    ) from None
                time.sleep(_POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _remove_stale_files(socket_path: Path, data_dir: Path) -> None:
    """Remove the socket and pidfile of a server that died without cleaning up (e.g. SIGKILL).

    Only called under the start lock, after PING failed and no live pid was found.
    """
    try:
        st = os.lstat(socket_path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise EmbeddedRedisError(f"{socket_path} exists and is not a socket; move it out of the way.")
        socket_path.unlink(missing_ok=True)
    (data_dir / PID_FILE_NAME).unlink(missing_ok=True)


def _start_server(
    executable: str, data_dir: Path, socket_path: Path, deadline: float, start_timeout_s: float
) -> None:
    """Run redis-server, which forks the daemon and exits at once.

    The foreground process writes to ``redis.log`` (so a bad option lands in the log we quote),
    stdin is /dev/null, and the daemon reopens its stdio on /dev/null: no pipe of the caller is
    held open. ``start_new_session`` keeps the caller's terminal signals away from it.
    """
    log_path = data_dir / LOG_FILE_NAME
    argv = server_argv(executable, data_dir, socket_path, data_dir / PID_FILE_NAME, data_dir / LOG_FILE_NAME)
    try:
        with open(log_path, "ab") as log_file:
            completed = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                cwd=data_dir,
                start_new_session=True,
                close_fds=True,
                timeout=max(deadline - time.monotonic(), _POLL_INTERVAL_S),
                check=False,
            )
    except subprocess.TimeoutExpired:
        raise EmbeddedRedisError(
            f"{executable} did not daemonize within {start_timeout_s:g} s.{_log_tail(log_path)}"
        ) from None
    except OSError as exc:
        raise EmbeddedRedisError(f"Could not run {executable}: {exc}") from exc
    if completed.returncode != 0:
        raise EmbeddedRedisError(
            f"{executable} exited with status {completed.returncode}.{_log_tail(log_path)}"
        )


def _wait_until_up(socket_path: Path, data_dir: Path, deadline: float, start_timeout_s: float) -> None:
    """Poll PING until it answers; fail early if the daemon's pid is written and then dies."""
    log_path = data_dir / LOG_FILE_NAME
    while True:
        probe_timeout_s = max(min(0.5, deadline - time.monotonic()), _POLL_INTERVAL_S)
        if _probe(socket_path, probe_timeout_s) == "up":
            return
        pid = _read_pidfile(data_dir)
        if pid is not None and not _pid_alive(pid) and _probe(socket_path) != "up":
            raise EmbeddedRedisError(
                f"The embedded redis-server (pid {pid}) exited while starting.{_log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise EmbeddedRedisError(
                f"The embedded redis-server did not answer on {socket_path} within "
                f"{start_timeout_s:g} s.{_log_tail(log_path)}"
            )
        time.sleep(_POLL_INTERVAL_S)


def _log_tail(log_path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The end of ``redis.log`` formatted to append to an error message ('' if there is none)."""
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            size = log_file.tell()
            log_file.seek(max(size - 16 * 1024, 0))
            text = log_file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    if not tail:
        return ""
    return f"\nLast lines of {log_path}:\n" + "\n".join(tail)
