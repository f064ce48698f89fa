"""An index for prune and stats; exact text and microsecond datetimes on MariaDB/MySQL.

* ``ix_tasks_status_finished`` on (status, finished_at): ``rqjobs prune`` and ``rqjobs
  stats`` select final rows by when they finished.
* MariaDB/MySQL only: the table is converted to utf8mb4 with a binary collation (a
  server whose default is latin1 could not store most of Unicode; a case-insensitive
  collation made ``--name Add`` match ``add``, unlike SQLite and PostgreSQL), and
  datetimes become DATETIME(6), keeping microseconds as the other databases do (whole
  seconds made durations of quick tasks 0 and ordering within a second arbitrary).
  One ALTER TABLE, so the table is rebuilt once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_DATETIMES = (
    ("created_at", "NOT NULL"),
    ("enqueued_at", "NULL"),
    ("scheduled_for", "NULL"),
    ("started_at", "NULL"),
    ("finished_at", "NULL"),
)


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if _is_mysql():
        columns = ", ".join(f"MODIFY {name} DATETIME(6) {null}" for name, null in _DATETIMES)
        op.execute(f"ALTER TABLE tasks CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, {columns}")
    op.create_index("ix_tasks_status_finished", "tasks", ["status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_finished", table_name="tasks")
    if _is_mysql():
        columns = ", ".join(f"MODIFY {name} DATETIME {null}" for name, null in _DATETIMES)
        op.execute(f"ALTER TABLE tasks {columns}")
