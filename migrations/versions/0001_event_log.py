"""The event log: tables, clock, hash chain, append/read functions, roles.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0001_event_log.up.sql")


def downgrade() -> None:
    apply_sql("0001_event_log.down.sql")
