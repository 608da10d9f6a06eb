"""Event waits count every matching event after their since point in the log; starting one never blocks.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0007_wait_order.up.sql")


def downgrade() -> None:
    apply_sql("0007_wait_order.down.sql")
