"""GDL definitions: versions, policies, triggers, goal type defaults.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0005_gdl.up.sql")


def downgrade() -> None:
    apply_sql("0005_gdl.down.sql")
