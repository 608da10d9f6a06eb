"""Operations (issue 19): trace context carried to workers, step progress.

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0030_operations.up.sql")


def downgrade() -> None:
    apply_sql("0030_operations.down.sql")
