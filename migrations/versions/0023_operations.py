"""Operations (issue 19): trace context carried to workers, step progress.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0023_operations.up.sql")


def downgrade() -> None:
    apply_sql("0023_operations.down.sql")
