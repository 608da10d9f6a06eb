"""Anchors for the hash chain: chain_head, anchor_problem, verify_anchors.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0015_chain_anchors.up.sql")


def downgrade() -> None:
    apply_sql("0015_chain_anchors.down.sql")
