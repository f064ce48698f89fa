"""Process helpers for workers: is a process alive, children that die with their parent,
worker names that say which process runs them.

Reconcile asks :func:`local_process_alive` before it calls a worker on this machine dead;
the worker makes its work horse and scheduler die with it (``PR_SET_PDEATHSIG``), because a
horse calls ``os.setpgrp()`` and would outlive a killed process group, running a job that
reconcile is about to re-queue.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from rqjobs.hostpid import split_host_pid


def new_worker_name(label: str) -> str:
    """An RQ worker name that names its process: ``host:pid:<8 hex>``.

    RQ stores the name in each job it starts (``job.worker_name``), so reconcile can tell
    which process started a job without any other bookkeeping.
    """
    return f"{label}:{uuid4().hex[:8]}"


def label_of_worker_name(name: str | None) -> str | None:
    """The ``host:pid`` part of a name made by :func:`new_worker_name` (None for others)."""
    if not name or name.count(":") < 2:
        return None
    label = name.rsplit(":", 1)[0]
    return label if split_host_pid(label) is not None else None


def signal_description(ret_val: int | None, *, hint: bool = True) -> str:
    """How a child process ended, from its wait status: "killed by SIGKILL", "exited with status 1"."""
    if ret_val is not None and os.WIFSIGNALED(ret_val):
        signum = os.WTERMSIG(ret_val)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint_text = " (kill -9 or the OOM killer)" if hint and signum == signal.SIGKILL else ""
        return f"killed by {name}{hint_text}"
    if ret_val is not None and os.WIFEXITED(ret_val):
        return f"exited with status {os.WEXITSTATUS(ret_val)}"
    return f"ended unexpectedly (wait status {ret_val})"


# -- is a process alive? ---------------------------------------------------------------------


def _boot_time_s() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def local_process_alive(pid: int, started_before: datetime | None = None) -> bool:
    """Does process ``pid`` exist on this machine (and is it the same one as back then)?

    A zombie counts as dead: a SIGKILLed worker whose parent has not reaped it yet is gone.
    With ``started_before``, a process that started later is a reused pid, not the worker.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs here: existence is all we can tell
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):
        return False
    if started_before is not None and len(fields) > 19:
        boot = _boot_time_s()
        if boot is not None:
            started_at = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
            # one second of slack for clock ticks and clock adjustments
            if started_at > started_before.timestamp() + 1.0:
                return False
    return True


# -- horses die with their worker ------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
_worker_pid: int | None = None
_forking: tuple[int, bool] | None = None
_fork_hooks_installed = False


def _load_prctl() -> Any:
    """prctl(2) from libc, resolved in the parent: a child must not call dlopen after fork."""
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.prctl
            fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            fn.restype = ctypes.c_int
            _prctl = fn
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def die_with_parent(sig: int = signal.SIGKILL, parent_pid: int | None = None) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only).

    If the parent is already gone (it died between the fork and this call), act now.
    """
    prctl = _load_prctl()
    if prctl is None or prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True


def _before_fork() -> None:
    global _forking
    _forking = (os.getpid(), threading.current_thread() is threading.main_thread())


def _after_fork_in_child() -> None:
    # only children of the worker process itself, forked by its main thread (PDEATHSIG is
    # tied to the forking thread): the work horse and the scheduler
    if _forking is not None and _worker_pid is not None:
        parent, from_main = _forking
        if parent == _worker_pid and from_main:
            die_with_parent(signal.SIGKILL, parent)


def kill_children_with_this_process() -> None:
    """From now on, every process this one forks dies when this one dies (Linux)."""
    global _worker_pid, _fork_hooks_installed
    if _load_prctl() is None:
        return
    _worker_pid = os.getpid()
    if not _fork_hooks_installed:
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _fork_hooks_installed = True
