"""Workers claim and continue only the steps they can run; goalrt.unserved_action names the others.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0012_capable_workers.up.sql")


def downgrade() -> None:
    apply_sql("0012_capable_workers.down.sql")
