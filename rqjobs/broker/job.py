"""RQ's Job, restricted to registered tasks.

Plain RQ imports whatever dotted path a job names. A worker that reads jobs from a
shared Redis must not: this Job resolves ``func_name`` through the task registry only,
so a job naming anything else fails with :class:`UnregisteredTask` before any code runs.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job

from rqjobs.exceptions import RqjobsError


class UnregisteredTask(RqjobsError):
    """The job names a function that is not a registered rqjobs task on this worker."""


class RqjobsJob(Job):
    @property
    def func(self) -> Any:  # type: ignore[override]
        from rqjobs.tasks.commons import spec_for_path

        spec = spec_for_path(self.func_name)
        if spec is None:
            raise UnregisteredTask(
                f"job {self.id} names {self.func_name!r}, which is not a registered task on this worker "
                "(check tasks_modules in the worker's config)"
            )
        return spec.wrapper
