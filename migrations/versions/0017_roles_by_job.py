"""Roles by job: goalrt_app and goalrt_worker; leases bound to the database role that took them.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0017_roles_by_job.up.sql")


def downgrade() -> None:
    apply_sql("0017_roles_by_job.down.sql")
