"""The hot path set-based: first plans and plain step completions of a batch in a few statements.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0013_batch_hot_path.up.sql")


def downgrade() -> None:
    apply_sql("0013_batch_hot_path.down.sql")
