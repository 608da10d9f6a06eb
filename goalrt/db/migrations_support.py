"""What alembic revisions and env.py call: run goalrt's SQL files in the migration's transaction."""

from __future__ import annotations

from typing import Any

import psycopg
from alembic import op
from alembic.runtime.migration import MigrationContext, RevisionStep

from goalrt.db.resources import read_sql, schema_files
from goalrt.errors import MigrationError

# The revision whose id the baseline kept (migrations/versions/0005_baseline.py),
# and the development revisions folded into it.
BASELINE = "0005"
PREDATING_BASELINE = ("0001", "0002", "0003", "0004")


def apply_sql(filename: str) -> None:
    """Execute a delta migration's SQL file (``sql/migrations/<filename>``) in the migration's transaction."""
    _execute(_dbapi(op.get_bind()), read_sql(f"migrations/{filename}"))


def apply_schema(connection: Any) -> None:
    """Build the current schema from the files of ``sql/schema``, in order, on env.py's SQLAlchemy connection."""
    dbapi = _dbapi(connection)
    for path in schema_files():
        _execute(dbapi, path.read_text(encoding="utf-8"))


def grant_revision_readable(connection: Any) -> None:
    """Let goalrt's roles read the revision (``goalrt.alembic_version``), once alembic has made that table.

    Every goalrt command checks the revision before it starts (``goalrt
    worker`` logged in as a worker role too). A database built from empty
    gets the table only when it is stamped, after its schema files ran: this
    runs then, the same SQL as migration 0029.
    """
    _execute(_dbapi(connection), read_sql("migrations/0029_revision_readable.up.sql"))


def collect_warnings(connection: Any, into: list[str]) -> None:
    """Append the primary message of every WARNING the server sends on env.py's connection to ``into``."""

    def keep(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity_nonlocalized == "WARNING" and diag.message_primary:
            into.append(diag.message_primary)

    _dbapi(connection).add_notice_handler(keep)


def _dbapi(connection: Any) -> Any:
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    return dbapi


def _execute(dbapi: Any, text: str) -> None:
    # Straight to the psycopg connection: with no parameters psycopg sends the
    # text as one simple query, so a file may hold many statements and its
    # ``%`` and ``:name`` are not taken for placeholders.
    dbapi.execute(text)


def refuse_predating(revision: str | None) -> None:
    """Refuse a database at a revision that was folded into the baseline."""
    if revision in PREDATING_BASELINE:
        raise MigrationError(
            f"the database is at revision {revision}, which predates the baseline revision {BASELINE}:"
            " upgrade it to 0005 with a goalrt from before the baseline, or drop its goalrt schema"
            " (DROP SCHEMA goalrt CASCADE) and run `goalrt migrate`"
        )


def builds_empty_database(migration_context: MigrationContext) -> bool:
    """Tell whether this alembic command upgrades an empty database (refusing a target other than head).

    The steps are computed the way alembic will run them: ``fn`` is the
    command's own plan (upgrade, downgrade, stamp) from the given heads.
    """
    plan = migration_context.opts.get("fn")
    if plan is None:
        return False
    upgrades = [s for s in plan((), migration_context) if isinstance(s, RevisionStep) and s.is_upgrade]
    if not upgrades:
        return False
    env = migration_context.environment_context
    assert env is not None, "migrations run from migrations/env.py"
    head = env.script.get_current_head()
    target = upgrades[-1].revision.revision
    if target != head:
        raise MigrationError(
            f"an empty database can only be built at the head revision {head}, not {target}:"
            " sql/schema holds the current schema only"
        )
    return True
