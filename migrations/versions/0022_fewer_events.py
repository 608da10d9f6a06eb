"""Fewer events per goal: goal.started folded into goal.planned, the last step.completed into goal.completed.

Revision ID: 0022
Revises: 0019
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0022"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0022_fewer_events.up.sql")


def downgrade() -> None:
    apply_sql("0022_fewer_events.down.sql")
