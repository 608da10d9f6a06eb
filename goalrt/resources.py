"""Locate the files goalrt needs at run time: the SQL and the alembic revisions.

In a wheel they are shipped inside the package (``goalrt/sql``,
``goalrt/migrations``); in a source checkout they are the top-level ``sql/``
and ``migrations/`` folders beside the package.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"goalrt is installed without its {name}/ folder (looked beside {PACKAGE_DIR})")


def sql_dir() -> Path:
    """Return the folder holding schema.sql, migrations/ and queries/."""
    return _locate("sql")


def migrations_dir() -> Path:
    """Return the alembic script folder (env.py and versions/)."""
    return _locate("migrations")


def read_sql(relative: str) -> str:
    """Return the text of a file under the sql folder."""
    return (sql_dir() / relative).read_text(encoding="utf-8")


_NAME = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)


@cache
def queries(group: str) -> dict[str, str]:
    """Return the named queries of ``sql/queries/<group>.sql``.

    Each query starts with a ``-- name: noun_verb`` line and runs to the next
    one; placeholders are PostgreSQL's own ``$1``, understood by asyncpg and by
    psycopg's raw cursors alike.
    """
    text = read_sql(f"queries/{group}.sql")
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.lstrip().startswith("--")]
        named[name] = "\n".join(lines).strip().rstrip(";")
    return named
