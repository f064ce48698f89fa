"""An index for the dashboard's ``schedule:NAME`` search: the schedule, then the id.

The tasks page lists rows newest first a page at a time (``ORDER BY id DESC LIMIT n``).
The unique index ``uq_tasks_schedule_tick`` (migration 0003) leads with the schedule but
then orders by tick, so it cannot give a schedule's rows in id order: with it alone,
SQLite either sorted all of a busy schedule's rows or, for a rare schedule (or a name
with no rows), scanned the whole table (measured on a million rows: ~330 ms either
way, against under 1 ms with this index). Rows made by no schedule sit together under
NULL at one end of the index, so an enqueue adds its entry next to the previous one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_schedule_id", "tasks", ["schedule", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_schedule_id", table_name="tasks")
