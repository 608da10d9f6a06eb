"""goalrt's functions take their locks in one order; no handler starts after its goal's cancel committed.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0011_lock_order.up.sql")


def downgrade() -> None:
    apply_sql("0011_lock_order.down.sql")
