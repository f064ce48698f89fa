"""Flow control (issue 14): unique tasks, dependencies, paused queues.

* ``tasks.unique_key``: the key a row was enqueued under (kept for history), and
  ``tasks.unique_active``: the same key while the row is waiting, deferred or running,
  NULL once it is final. A UNIQUE index on ``unique_active`` lets the database itself
  refuse a second live row with one key, whichever processes race; NULLs are distinct on
  SQLite, PostgreSQL and MariaDB, and MariaDB has no partial indexes, hence the second
  column rather than ``WHERE status IN (...)``.
* ``task_dependencies``: one row per (child, parent) edge; a ``deferred`` child is
  enqueued when every parent has finished. Indexed by parent, the lookup made when a
  parent ends.
* ``paused_queues``: queues workers must not take jobs from, in SQL so that a pause
  survives a Redis restart.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# frozen copy of the column type at this revision (never import the live models here)
DateTimeUS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("unique_key", sa.String(200)))
    op.add_column("tasks", sa.Column("unique_active", sa.String(200)))
    op.create_index("uq_tasks_unique_active", "tasks", ["unique_active"], unique=True)
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("parent_id", sa.Integer(), primary_key=True, autoincrement=False),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_task_dependencies_parent", "task_dependencies", ["parent_id"])
    op.create_table(
        "paused_queues",
        sa.Column("queue", sa.String(200), primary_key=True),
        sa.Column("paused_at", DateTimeUS, nullable=False),
        sa.Column("paused_by", sa.String(200)),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("paused_queues")
    op.drop_index("ix_task_dependencies_parent", table_name="task_dependencies")
    op.drop_table("task_dependencies")
    op.drop_index("uq_tasks_unique_active", table_name="tasks")
    with op.batch_alter_table("tasks", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("unique_active")
        batch.drop_column("unique_key")
