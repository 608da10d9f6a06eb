"""alembic environment for goalrt: thin, online only.

The URL comes from the caller (``goalrt migrate``) or, when alembic is run
from the command line, from GOALRT_DATABASE_URL / the embedded server. An
advisory lock makes concurrent migrations run one after the other.

An empty database is not built by replaying revisions: an upgrade of it to
head applies the files of ``sql/schema`` (the current schema) and stamps
head. A database that has a revision runs the delta migrations after it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from goalrt.db.config import database_url
from goalrt.db.connect import connect
from goalrt.db.migrations_support import (
    apply_schema,
    builds_empty_database,
    collect_warnings,
    grant_revision_readable,
    refuse_predating,
)

# Any fixed pair works; it only has to be the same for every goalrt process.
MIGRATION_LOCK = (0x676F616C, 0x6D696772)  # "goal", "migr"

url = context.config.attributes.get("goalrt_url") or database_url()
engine = create_engine(
    "postgresql+psycopg://", creator=lambda: connect(url, autocommit=False, raw=False), poolclass=NullPool
)

with engine.connect() as connection:
    # The SQL's WARNINGs (objects the migration names but leaves alone, roles
    # it could not create) go back to the caller; psycopg would drop them.
    collect_warnings(connection, context.config.attributes.setdefault("goalrt_warnings", []))
    connection.exec_driver_sql("SELECT pg_advisory_lock(%s, %s)", MIGRATION_LOCK)
    try:
        connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS goalrt")
        connection.commit()
        context.configure(
            connection=connection,
            version_table_schema="goalrt",
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            migration_context = context.get_context()
            # Read under the lock, so the caller can say truthfully what it changed.
            before = migration_context.get_current_revision()
            context.config.attributes["goalrt_before"] = before
            refuse_predating(before)
            if before is None and builds_empty_database(migration_context):
                apply_schema(connection)
                migration_context.stamp(context.script, "head")
                grant_revision_readable(connection)
            else:
                context.run_migrations()
        connection.commit()
    finally:
        connection.exec_driver_sql("SELECT pg_advisory_unlock(%s, %s)", MIGRATION_LOCK)
        connection.commit()
engine.dispose()
