"""Baseline: goalrt's schema, built from the files of sql/schema.

Revision ID: 0005
Revises:

Nothing had been released when the five development revisions (0001 event
log, 0002 state, 0003 goals, 0004 coordination, 0005 GDL) were folded into
this one. It keeps the id of their head, 0005: a database those revisions
brought to 0005 has exactly the catalog sql/schema builds (the test
tests/integration/test_migrations.py::test_migrations_equal_schema_files
proves it against tests/fixtures/schema_0005.sql.gz, the old schema frozen),
so it is at this revision already and upgrades through the deltas after it.
A database at 0001..0004 is refused with a message saying what to do.

The baseline is never replayed: migrations/env.py builds an empty database
by applying sql/schema (the current schema, deltas included) and stamping
head. Its downgrade removes everything goalrt created (see
sql/migrations/0005_baseline.down.sql).
"""

from __future__ import annotations

from goalrt.db.migrations_support import apply_sql
from goalrt.errors import MigrationError

revision = "0005"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # migrations/env.py builds an empty database from sql/schema instead of
    # running this; reaching it means that check was bypassed.
    raise MigrationError("the baseline revision is built from sql/schema by migrations/env.py, never replayed")


def downgrade() -> None:
    apply_sql("0005_baseline.down.sql")
