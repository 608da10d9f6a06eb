"""Ticks commit alone and durably; readers never see their own uncommitted positions.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0006_tick_committed.up.sql")


def downgrade() -> None:
    apply_sql("0006_tick_committed.down.sql")
