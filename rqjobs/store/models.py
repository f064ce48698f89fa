"""The ``tasks`` table: one durable row per job (docs/ARCHITECTURE.md).

Column types are chosen to behave the same on SQLite, PostgreSQL and MariaDB: JSON is
stored as text through a TypeDecorator, and datetimes are stored as naive UTC and
handed back timezone-aware, so no dialect's timezone handling can shift them. On
MariaDB/MySQL the table is utf8mb4 with a binary collation (any Unicode text; names
compare exactly, as on the other databases) and datetimes keep microseconds.

This module must match the migrations (a test compares them with Alembic's autogenerate).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

from rqjobs import defaults

#: MariaDB's TEXT holds 64 KiB only: logs and results get LONGTEXT there
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
#: MariaDB's DATETIME keeps whole seconds unless asked for microseconds (migration 0002)
DateTimeUS = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class JSONText(TypeDecorator[Any]):
    """JSON serialised into a text column: identical on every dialect."""

    impl = LongText
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return json.loads(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive UTC."""

    impl = DateTimeUS
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


#: the schema's metadata (Alembic compares the migrations against it)
metadata = MetaData()

#: one job's durable record; ``str(id)`` is the RQ job id. SQLAlchemy Core only: the ORM
#: would add ~50 ms of imports to every command, and no code path needs a unit of work
tasks_table = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(defaults.NAME_MAX_CHARS), nullable=False),
    Column("description", String(defaults.DESCRIPTION_MAX_CHARS), nullable=False),
    Column("queue", String(defaults.QUEUE_MAX_CHARS), nullable=False),
    Column("args", JSONText, nullable=False, default=list),
    Column("kwargs", JSONText, nullable=False, default=dict),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False, default=0),
    Column("progress_message", String(defaults.PROGRESS_MESSAGE_MAX_CHARS)),
    # when the running task last reported progress (migration 0007): the one change that
    # had no time of its own in the row (`rqjobs tail` stamps its lines from the row)
    Column("progress_at", UTCDateTime),
    Column("result", JSONText, nullable=True),
    Column("log", LongText),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_retries", Integer, nullable=False, default=0),
    Column("retry_intervals", JSONText, nullable=True),
    Column("timeout_s", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("enqueued_at", UTCDateTime),
    Column("scheduled_for", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("worker", String(defaults.WORKER_MAX_CHARS)),
    # rows made by a [[schedule]]: its name and the tick the row is for (NULL for a run
    # outside the ticks, `rqjobs schedule run`); migration 0003
    Column("schedule", String(defaults.SCHEDULE_MAX_CHARS)),
    Column("schedule_tick", UTCDateTime),
    # unique tasks (migration 0005): the key the row was enqueued under, and the same key
    # while the row is waiting, deferred or running (NULL once final). The unique index on
    # `unique_active` is what makes two racing enqueues of one key make one row, on every
    # database (MariaDB has no partial indexes, hence a second column)
    Column("unique_key", String(defaults.UNIQUE_KEY_MAX_CHARS)),
    Column("unique_active", String(defaults.UNIQUE_KEY_MAX_CHARS)),
    # at most one row per (schedule, tick), whichever workers race for it: a unique index
    # (SQLite adds one without rebuilding the table, unlike a constraint); NULLs are
    # distinct on every supported database, so other rows are unaffected. Also serves
    # `status --schedule NAME`
    Index("uq_tasks_schedule_tick", "schedule", "schedule_tick", unique=True),
    # `status --failed` and the status footer; newest first within a status
    Index("ix_tasks_status_id", "status", "id"),
    # `status --name X --since 1h`
    Index("ix_tasks_name_created", "name", "created_at"),
    Index("ix_tasks_created", "created_at"),
    # `prune` (final rows finished before a cutoff) and `stats` (completions over time)
    Index("ix_tasks_status_finished", "status", "finished_at"),
    # the web dashboard's search, newest first a page at a time (migration 0004)
    Index("ix_tasks_name_id", "name", "id"),
    Index("ix_tasks_queue_id", "queue", "id"),
    # `schedule:NAME` in the dashboard's search (migration 0006): uq_tasks_schedule_tick
    # orders a schedule's rows by tick, not by id
    Index("ix_tasks_schedule_id", "schedule", "id"),
    Index("uq_tasks_unique_active", "unique_active", unique=True),
    # SQLite reuses the largest rowid after a delete unless AUTOINCREMENT is on;
    # the id is also the RQ job id, so it must never come back
    sqlite_autoincrement=True,
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)


#: one row per schedule that a worker has seen: where its ticking stands, and whether an
#: operator paused it (kept in SQL, so a restart of Redis or of every worker forgets nothing)
schedules_table = Table(
    "schedules",
    metadata,
    Column("name", String(200), primary_key=True),
    #: the newest tick handled (a row made, recorded as skipped, or passed over by catch_up)
    Column("last_tick", UTCDateTime),
    #: the newest row this schedule made that was not a skip (skip_if_running looks at it)
    Column("last_task_id", Integer),
    Column("paused", Boolean(create_constraint=False), nullable=False, default=False),
    Column("paused_at", UTCDateTime),
    Column("paused_by", String(200)),
    Column("updated_at", UTCDateTime, nullable=False),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)


#: dependencies (migration 0005): the child row stays `deferred` until every parent has
#: finished; indexed by parent, the lookup made when a parent ends
task_dependencies_table = Table(
    "task_dependencies",
    metadata,
    Column("task_id", Integer, primary_key=True, autoincrement=False),
    Column("parent_id", Integer, primary_key=True, autoincrement=False),
    Index("ix_task_dependencies_parent", "parent_id"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

#: queues workers take no jobs from (migration 0005); in SQL, so a pause survives a Redis
#: restart
paused_queues_table = Table(
    "paused_queues",
    metadata,
    Column("queue", String(defaults.QUEUE_MAX_CHARS), primary_key=True),
    Column("paused_at", UTCDateTime, nullable=False),
    Column("paused_by", String(200)),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)


class Task:
    """The tasks table under the name the rest of the code uses: ``Task.__table__``."""

    __table__ = tasks_table


#: columns only the store itself reads or writes: not part of a TaskRecord
INTERNAL_COLUMNS: frozenset[str] = frozenset({"unique_active"})
#: the columns a TaskRecord carries (and `--json` prints)
TASK_COLUMNS: tuple[str, ...] = tuple(c.name for c in tasks_table.columns if c.name not in INTERNAL_COLUMNS)
