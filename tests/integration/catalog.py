"""A comparable description of everything in the goalrt schema."""

from __future__ import annotations

from typing import Any

import psycopg

# Each query returns sorted rows describing one kind of object. The alembic
# version table exists only in migrated databases and is not part of the schema.
CATALOG_QUERIES: dict[str, str] = {
    "relations": """
        SELECT c.relname, c.relkind, c.relacl::text, obj_description(c.oid, 'pg_class')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'goalrt' AND c.relname <> 'alembic_version' AND c.relname <> 'alembic_version_pkc'
         ORDER BY 1""",
    "columns": """
        SELECT c.relname,
               -- the column's place, not attnum: a dropped and re-added column leaves a gap in attnum
               row_number() OVER (PARTITION BY c.relname ORDER BY a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, a.attacl::text
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = 'goalrt' AND a.attnum > 0 AND NOT a.attisdropped
           AND c.relname NOT LIKE 'alembic_version%'
         ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'goalrt'::regnamespace
           AND conrelid::regclass::text NOT LIKE '%alembic_version%'
         ORDER BY 1, 2""",
    "indexes": """
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE c.relnamespace = 'goalrt'::regnamespace AND c.relname <> 'alembic_version'
         ORDER BY 1""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid),
               p.proacl::text, obj_description(p.oid, 'pg_proc')
          FROM pg_proc p WHERE p.pronamespace = 'goalrt'::regnamespace
         ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal
           AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'goalrt'::regnamespace)
         ORDER BY 1, 2""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = 'goalrt' ORDER BY 1""",
    "schema": """
        SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname = 'goalrt'""",
    "types": """
        SELECT t.typname, t.typtype FROM pg_type t
         WHERE t.typnamespace = 'goalrt'::regnamespace AND t.typname NOT LIKE '%alembic_version%'
         ORDER BY 1""",
}


def describe(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {kind: conn.execute(q).fetchall() for kind, q in CATALOG_QUERIES.items()}
