"""Steps that kill their worker fail after max_attempts; re-sent retries are recognised; limits are range-checked.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql("0006_worker_attempts.up.sql")


def downgrade() -> None:
    apply_sql("0006_worker_attempts.down.sql")
