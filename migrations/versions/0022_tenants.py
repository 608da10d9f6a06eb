"""Tenants enforced by row-level security (issue 18 item 2).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0022_tenants.up.sql")


def downgrade() -> None:
    apply_sql("0022_tenants.down.sql")
