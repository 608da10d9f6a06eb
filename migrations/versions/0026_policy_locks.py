"""Policies hold under concurrency: policy instances locked before they are checked (issue 20 item 5).

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0026_policy_locks.up.sql")


def downgrade() -> None:
    apply_sql("0026_policy_locks.down.sql")
