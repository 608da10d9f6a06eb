"""Two gaps in the lock order closed: a claim as a session's first call, idempotency keys of batches.

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
    apply_sql("0014_lock_order_gaps.up.sql")


def downgrade() -> None:
    apply_sql("0014_lock_order_gaps.down.sql")
