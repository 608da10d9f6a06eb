"""Coordination: waits, timers, asks, child goals, deadlines, limits, partitions.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0004_coordination.up.sql")


def downgrade() -> None:
    apply_sql("0004_coordination.down.sql")
