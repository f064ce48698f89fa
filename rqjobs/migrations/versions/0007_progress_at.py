"""When a running task last reported progress: ``tasks.progress_at``.

Every other change of a row carries its own time (``enqueued_at``, ``started_at``,
``finished_at``); a progress report did not, so `rqjobs tail` piped could only stamp it
with the time its poll noticed it. The column is written by the same UPDATE that writes
the progress, so it costs no round trip.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# frozen copy of the column type at this revision (never import the live models here)
DateTimeUS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("progress_at", DateTimeUS))


def downgrade() -> None:
    with op.batch_alter_table("tasks", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("progress_at")
