"""JSON nested deeper than 100 levels is refused in SQL at every entry point.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0010_json_depth.up.sql")


def downgrade() -> None:
    apply_sql("0010_json_depth.down.sql")
