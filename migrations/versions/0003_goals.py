"""Goals: lifecycle, claims with leases and epochs, steps, workers.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0003_goals.up.sql")


def downgrade() -> None:
    apply_sql("0003_goals.down.sql")
