"""Files rqjobs creates are private to the user running it: folders 0700, files 0600.

The rows hold every job's arguments and results, the Redis files hold the job payloads
and the outbox holds whole mails, so nothing rqjobs writes should be readable by another
local user. Folders and files are created with those modes (or under a 077 umask, for
code that creates files itself: SQLite's -wal/-shm, redis-server, Pillow); a data folder
that already exists is not changed, but one readable by others earns a one-line warning
(returned here; the CLI prints it, the runtime logs it: the library never prints).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the umask under which rqjobs (and the programs it starts) create files
PRIVATE_UMASK = 0o077

_warned: set[str] = set()


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700; existing folders are left as they are."""
    path = Path(path).expanduser()
    if not path.is_dir():
        if path.parent != path:
            ensure_private_dir(path.parent)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(path, 0o700)  # mkdir's mode is masked by the umask: never looser, but be exact
    return path


def create_private_file(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless it exists (a SQLite file before it opens)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with mode 0600 for a file it creates."""
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


@contextmanager
def private_umask() -> Iterator[None]:
    """Run a block under umask 077, for code that creates files with its own modes.

    The umask is per process: use it where one thread does the work (a work horse, a
    command), not around code that runs beside other threads creating files.
    """
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def exposure_warning(path: Path) -> str | None:
    """A one-line warning if the existing folder ``path`` is open to other users, else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not stat.S_ISDIR(mode) or not mode & 0o077:
        return None
    return (
        f"Warning: the data folder {path} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
        f"run: chmod 700 {path}"
    )


def exposure_warning_once(path: Path) -> str | None:
    """:func:`exposure_warning`, given once per folder and process."""
    key = str(Path(path).expanduser().absolute())
    if key in _warned:
        return None
    message = exposure_warning(Path(key))
    if message is not None:
        _warned.add(key)
    return message
