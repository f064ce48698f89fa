"""``host:pid``: how rqjobs names a process, in the ``worker`` column and in Redis keys.

One spelling, built and taken apart here only, so the liveness key a worker writes, the
``worker`` column of the rows it runs and the reconcile lock's holder always agree.
"""

from __future__ import annotations

import os
import socket


def host_pid(pid: int | None = None) -> str:
    """``host:pid`` of process ``pid`` on this machine (this process by default)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def split_host_pid(label: str | None) -> tuple[str, int] | None:
    """``(host, pid)`` of a ``host:pid`` label; None for anything else."""
    if not label:
        return None
    host, _, pid = label.rpartition(":")
    if not host or not pid.isdigit():
        return None
    return host, int(pid)


def is_this_host(host: str) -> bool:
    """Whether ``host`` (from a label) is this machine, where its pid can be checked."""
    return host == socket.gethostname()
