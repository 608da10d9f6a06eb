"""alembic environment for goalrt: thin, online only.

The URL comes from the caller (``goalrt migrate``) or, when alembic is run
from the command line, from GOALRT_DATABASE_URL / the embedded server. An
advisory lock makes concurrent migrations run one after the other.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from goalrt.db.config import database_url
from goalrt.db.connect import connect

# Any fixed pair works; it only has to be the same for every goalrt process.
MIGRATION_LOCK = (0x676F616C, 0x6D696772)  # "goal", "migr"

url = context.config.attributes.get("goalrt_url") or database_url()
engine = create_engine(
    "postgresql+psycopg://", creator=lambda: connect(url, autocommit=False, raw=False), poolclass=NullPool
)

with engine.connect() as connection:
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
            # Read under the lock, so the caller can say truthfully what it changed.
            context.config.attributes["goalrt_before"] = context.get_context().get_current_revision()
            context.run_migrations()
        connection.commit()
    finally:
        connection.exec_driver_sql("SELECT pg_advisory_unlock(%s, %s)", MIGRATION_LOCK)
        connection.commit()
engine.dispose()
