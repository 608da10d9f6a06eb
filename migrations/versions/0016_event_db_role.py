"""Every event records the login role that appended it (event_data.db_role), covered by the hash chain.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0016_event_db_role.up.sql")


def downgrade() -> None:
    apply_sql("0016_event_db_role.down.sql")
