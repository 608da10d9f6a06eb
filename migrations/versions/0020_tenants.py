"""Tenants enforced by row-level security (issue 18 item 2).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0020_tenants.up.sql")


def downgrade() -> None:
    apply_sql("0020_tenants.down.sql")
