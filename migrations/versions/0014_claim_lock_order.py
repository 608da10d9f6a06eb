"""claim_goals_v2 takes its buckets in key order also as the first call of a session.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0014_claim_lock_order.up.sql")


def downgrade() -> None:
    apply_sql("0014_claim_lock_order.down.sql")
