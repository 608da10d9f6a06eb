"""Every goalrt role may read the schema revision, so `goalrt worker` starts as a worker role.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0029_revision_readable.up.sql")


def downgrade() -> None:
    apply_sql("0029_revision_readable.down.sql")
