"""Ticks commit alone and durably; readers never see their own uncommitted positions.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0008_tick_committed.up.sql")


def downgrade() -> None:
    apply_sql("0008_tick_committed.down.sql")
