"""Recurring tasks: which schedule and tick a row is for, and each schedule's state.

* ``tasks.schedule`` and ``tasks.schedule_tick`` with a UNIQUE index on the pair:
  whichever workers race for a tick, the database lets one row in (NULLs are distinct on
  SQLite, PostgreSQL and MariaDB, so rows not made by a schedule never collide).
* ``schedules``: the newest tick handled, the last row made, and the pause state, in SQL so
  that it survives restarts of Redis and of every worker.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# frozen copy of the column type at this revision (never import the live models here)
DateTimeUS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN and CREATE UNIQUE INDEX: no table rebuild on any database
    # (a unique constraint would make SQLite copy the whole table)
    op.add_column("tasks", sa.Column("schedule", sa.String(200)))
    op.add_column("tasks", sa.Column("schedule_tick", DateTimeUS))
    op.create_index("uq_tasks_schedule_tick", "tasks", ["schedule", "schedule_tick"], unique=True)
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("last_tick", DateTimeUS),
        sa.Column("last_task_id", sa.Integer()),
        sa.Column("paused", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("paused_at", DateTimeUS),
        sa.Column("paused_by", sa.String(200)),
        sa.Column("updated_at", DateTimeUS, nullable=False),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_index("uq_tasks_schedule_tick", table_name="tasks")
    with op.batch_alter_table("tasks", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("schedule_tick")
        batch.drop_column("schedule")
