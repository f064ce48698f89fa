"""The ``tasks`` table: one durable row per job (DESIGN section 2).

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

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

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


class Base(DeclarativeBase):
    pass


class Task(Base):
    """One job's durable record. ``str(id)`` is the RQ job id."""

    __tablename__ = "tasks"
    __table_args__ = (
        # `status --failed` and the status footer; newest first within a status
        Index("ix_tasks_status_id", "status", "id"),
        # `status --name X --since 1h`
        Index("ix_tasks_name_created", "name", "created_at"),
        Index("ix_tasks_created", "created_at"),
        # `prune` (final rows finished before a cutoff) and `stats` (completions over time)
        Index("ix_tasks_status_finished", "status", "finished_at"),
        {
            # SQLite reuses the largest rowid after a delete unless AUTOINCREMENT is on;
            # the id is also the RQ job id, so it must never come back
            "sqlite_autoincrement": True,
            "mysql_charset": "utf8mb4",
            "mysql_collate": "utf8mb4_bin",
        },
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(String(1000), nullable=False)
    queue: Mapped[str] = mapped_column(String(200), nullable=False)
    args: Mapped[Any] = mapped_column(JSONText, nullable=False, default=list)
    kwargs: Mapped[Any] = mapped_column(JSONText, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    progress: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    progress_message: Mapped[str | None] = mapped_column(String(1000))
    result: Mapped[Any] = mapped_column(JSONText, nullable=True)
    log: Mapped[str | None] = mapped_column(LongText)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retry_intervals: Mapped[Any] = mapped_column(JSONText, nullable=True)
    timeout_s: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(200))


TASK_COLUMNS: tuple[str, ...] = tuple(c.name for c in Task.__table__.columns)
