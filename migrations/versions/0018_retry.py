"""goalrt.retry_goal: a failed or cancelled goal runs again from a step.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0018_retry.up.sql")


def downgrade() -> None:
    apply_sql("0018_retry.down.sql")
