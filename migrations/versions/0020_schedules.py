"""Schedules: goals submitted on a cron or every schedule, once per tick.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0020_schedules.up.sql")


def downgrade() -> None:
    apply_sql("0020_schedules.down.sql")
