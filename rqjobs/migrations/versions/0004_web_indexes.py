"""Indexes for the web dashboard's search: the task name or queue, then the id.

The tasks page lists rows newest first a page at a time (``ORDER BY id DESC LIMIT n``).
With ``task:`` or ``queue:`` in the search, an index that leads with that column and ends
with the id lets the database walk the matching rows in id order and stop after a page;
without it, a rare name or queue made it scan the whole table (measured: ~230 ms on a
million SQLite rows, against under 10 ms with the index). ``worker:`` has no index of its
own: the worker column changes on every run, and each index costs every enqueue (~4% on
SQLite here); a worker search looks through a bounded window of ids per page instead.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_tasks_name_id": ["name", "id"],
    "ix_tasks_queue_id": ["queue", "id"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(name, "tasks", columns)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="tasks")
