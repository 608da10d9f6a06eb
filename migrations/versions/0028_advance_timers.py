"""goalrt test's then advance through goalrt.advance_timers, refused outside a fork (issue 20).

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0028_advance_timers.up.sql")


def downgrade() -> None:
    apply_sql("0028_advance_timers.down.sql")
