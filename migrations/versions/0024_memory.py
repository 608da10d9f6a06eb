"""Agent memory: the history indexed for search by words and, with pgvector, meaning (issue 22 item 3).

Revision ID: 0024
Revises: 0022
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0024"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0024_memory.up.sql")


def downgrade() -> None:
    apply_sql("0024_memory.down.sql")
