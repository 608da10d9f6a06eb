"""The hot path: holds_lease inlined, lock_goals and params checks cut short, lifecycle trigger on status changes.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0025_hot_path.up.sql")


def downgrade() -> None:
    apply_sql("0025_hot_path.down.sql")
