"""What alembic revisions call: run one SQL file from ``sql/migrations``."""

from __future__ import annotations

from alembic import op

from goalrt.db.resources import read_sql


def apply_sql(filename: str) -> None:
    """Execute a migration's SQL file in the migration's transaction.

    It goes straight to the psycopg connection: with no parameters psycopg
    sends the text as one simple query, so the file may hold many statements
    and its ``%`` and ``:name`` are not taken for placeholders.
    """
    dbapi = op.get_bind().connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute(read_sql(f"migrations/{filename}"))
