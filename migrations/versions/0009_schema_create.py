"""No role but the owner may create objects in goalrt's schemas; goalrt.foreign_objects().

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0009_schema_create.up.sql")


def downgrade() -> None:
    apply_sql("0009_schema_create.down.sql")
