"""Locate the files goalrt needs at run time: the SQL and the alembic revisions.

In a wheel they are shipped inside the package (``goalrt/sql``,
``goalrt/migrations``); in a source checkout they are the top-level ``sql/``
and ``migrations/`` folders beside the package.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _locate(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"goalrt is installed without its {name}/ folder (looked beside {PACKAGE_DIR})")


def sql_dir() -> Path:
    """Return the folder holding schema/, migrations/ and queries/."""
    return _locate("sql")


def migrations_dir() -> Path:
    """Return the alembic script folder (env.py and versions/)."""
    return _locate("migrations")


def read_sql(relative: str) -> str:
    """Return the text of a file under the sql folder."""
    return (sql_dir() / relative).read_text(encoding="utf-8")


# The schema's first file: extensions, which a fork (a schema in the same
# database) must not create again.
EXTENSIONS_FILE = "00_extensions.sql"


def schema_files() -> list[Path]:
    """Return the files of ``sql/schema``, in the order they are applied (by name)."""
    files = sorted((sql_dir() / "schema").glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no schema files in {sql_dir() / 'schema'}")
    return files


def schema_sql(skip: Collection[str] = ()) -> str:
    """Return the whole schema: the files of ``sql/schema`` in order, less those named in ``skip``."""
    return "\n".join(f.read_text(encoding="utf-8") for f in schema_files() if f.name not in skip)


_NAME = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)


MAIN_SCHEMA = "goalrt"
_QUALIFIED = re.compile(r"\bgoalrt\.")
_SCHEMA_CLAUSE = re.compile(r"\b(SCHEMA (?:IF NOT EXISTS )?)goalrt\b")
_SEARCH_PATH = re.compile(r"\b(search_path = pg_catalog, )goalrt\b")
_CHANNEL = re.compile(r"'goalrt_(events|append|goals|cancel|gdl)'")


def in_schema(text: str, schema: str) -> str:
    """Return goalrt SQL rewritten to act on another schema (a fork's).

    Rewrites qualified names (``goalrt.x``), ``SCHEMA goalrt`` clauses, the
    functions' ``search_path`` and the NOTIFY channels (``goalrt_events``
    becomes ``<schema>_events``). Role names are left alone.
    """
    if schema == MAIN_SCHEMA:
        return text
    text = _QUALIFIED.sub(f"{schema}.", text)
    text = _SCHEMA_CLAUSE.sub(lambda m: m.group(1) + schema, text)
    text = _SEARCH_PATH.sub(lambda m: m.group(1) + schema, text)
    return _CHANNEL.sub(lambda m: f"'{schema}_{m.group(1)}'", text)


@cache
def queries(group: str, schema: str = MAIN_SCHEMA) -> dict[str, str]:
    """Return the named queries of ``sql/queries/<group>.sql`` for ``schema``.

    Each query starts with a ``-- name: noun_verb`` line and runs to the next
    one; placeholders are PostgreSQL's own ``$1``, understood by asyncpg and by
    psycopg's raw cursors alike.
    """
    text = in_schema(read_sql(f"queries/{group}.sql"), schema)
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.lstrip().startswith("--")]
        named[name] = "\n".join(lines).strip().rstrip(";")
    return named
