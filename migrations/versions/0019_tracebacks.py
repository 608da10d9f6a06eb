"""Tracebacks: a handler's traceback kept in its step.failed event.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0019_tracebacks.up.sql")


def downgrade() -> None:
    apply_sql("0019_tracebacks.down.sql")
