"""A running worker notices an edited config file between jobs and applies what it can.

``rqjobs worker`` runs for days; its ``rqjobs.toml`` gets edited meanwhile (a
``templates_dir`` added, a timeout raised). Without a reload, ``enqueue`` would check a
request against the new file and the worker would run it under the old one. So before
each job the worker looks at the file (one ``stat``); when it changed, it reads it again:

* settings that only shape how jobs run (templates, mail, timeouts, intervals, limits)
  are applied at once, to this job and the next ones (the work horse is forked after);
* the task modules, the connections (``redis_url``, ``database_url``, ``data_dir``,
  ``redis_server``) and the ``[[schedule]]`` tables need a restart: the worker logs
  which of them changed and keeps what it started with;
* a file that no longer parses is logged and the worker keeps its settings.

The environment and the command line's flags count as they did at start: they are read
again too, and the flags only name restart-only settings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING

from rqjobs.exceptions import RqjobsError

if TYPE_CHECKING:
    from rqjobs.config import Settings
    from rqjobs.runtime import Runtime

log = logging.getLogger("rqjobs.worker")

#: settings a running worker cannot take up: it logs that they need a restart
RESTART_ONLY = ("tasks_modules", "redis_url", "database_url", "data_dir", "redis_server", "schedules")

#: what identifies one version of the file: (mtime in ns, size, inode)
_Stamp = tuple[int, int, int]


def _stamp(path: os.PathLike[str] | str) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigWatcher:
    """Reloads ``runtime``'s config file when it changed since the last look."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.path = runtime.settings.config_path
        self._stamp = _stamp(self.path) if self.path else None
        #: the file as last read (without the worker's restart-only keys): what a change is measured from
        self._baseline: Settings | None = self._read() if self.path else None
        self._missing_logged = False

    def _read(self) -> Settings | None:
        from rqjobs.config import load_settings

        assert self.path is not None
        try:
            return load_settings(self.path)
        except (RqjobsError, OSError) as exc:
            log.error("config file %s not applied, the worker keeps its settings: %s", self.path, exc)
            return None

    def check(self) -> bool:
        """Look at the file; reload it if it changed. True when new settings were applied.

        Never raises: a worker must go on with its job whatever the file says.
        """
        if self.path is None:
            return False
        try:
            return self._check()
        except Exception:
            log.exception("could not reload the config file %s; the worker keeps its settings", self.path)
            return False

    def _check(self) -> bool:
        assert self.path is not None
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if stamp is None:
            if not self._missing_logged:
                log.warning("config file %s is gone; the worker keeps its settings", self.path)
                self._missing_logged = True
            return False
        self._missing_logged = False
        loaded = self._read()
        if loaded is None:
            return False
        before = self._baseline
        self._baseline = loaded
        if before is not None:
            needs_restart = [k for k in RESTART_ONLY if getattr(loaded, k) != getattr(before, k)]
            if needs_restart:
                log.warning(
                    "config file %s: %s changed; restart the worker to use the new value (not applied)",
                    self.path,
                    ", ".join(needs_restart),
                )
        current = self.runtime.settings
        applied = dataclasses.replace(loaded, **{k: getattr(current, k) for k in RESTART_ONLY})
        changed = [
            f.name
            for f in dataclasses.fields(applied)
            if getattr(applied, f.name) != getattr(current, f.name)
        ]
        if not changed:
            return False
        self.runtime.replace_settings(applied)
        log.info("config file %s reloaded: %s applied", self.path, ", ".join(changed))
        return True


__all__ = ["RESTART_ONLY", "ConfigWatcher"]
