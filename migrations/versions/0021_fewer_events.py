"""Fewer events per goal: goal.started folded into goal.planned, the last step.completed into goal.completed.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0021_fewer_events.up.sql")


def downgrade() -> None:
    apply_sql("0021_fewer_events.down.sql")
