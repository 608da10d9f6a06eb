"""GDL event declarations enforced by the database: appends of a declared type checked (issue 20 item 2).

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0027_event_declarations.up.sql")


def downgrade() -> None:
    apply_sql("0027_event_declarations.down.sql")
