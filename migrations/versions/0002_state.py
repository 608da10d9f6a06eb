"""State: materialized paths with version clocks, snapshots, time travel, forks.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0002_state.up.sql")


def downgrade() -> None:
    apply_sql("0002_state.down.sql")
