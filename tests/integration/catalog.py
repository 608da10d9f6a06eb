"""A comparable description of everything in the goalrt schema."""

from __future__ import annotations

from typing import Any

import psycopg

# Each query returns sorted rows describing one kind of object. The alembic
# version table exists only in migrated databases and is not part of the schema.
CATALOG_QUERIES: dict[str, str] = {
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.reloptions::text, c.relacl::text,
               obj_description(c.oid, 'pg_class')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'goalrt' AND c.relname <> 'alembic_version' AND c.relname <> 'alembic_version_pkc'
         ORDER BY 1""",
    "columns": """
        SELECT c.relname,
               -- the column's place, not attnum: a dropped and re-added column leaves a gap in attnum
               row_number() OVER (PARTITION BY c.relname ORDER BY a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, a.attacl::text,
               col_description(c.oid, a.attnum)
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
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled
          FROM pg_trigger WHERE NOT tgisinternal
           AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'goalrt'::regnamespace)
         ORDER BY 1, 2""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = 'goalrt' ORDER BY 1""",
    "schema": """
        SELECT nspname, nspacl::text, obj_description(oid, 'pg_namespace')
          FROM pg_namespace WHERE nspname = 'goalrt'""",
    # Identity columns' sequences: their options and the column that owns them.
    "sequences": """
        SELECT c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmax, s.seqmin,
               s.seqcache, s.seqcycle, d.refobjid::regclass::text, a.attname, d.deptype
          FROM pg_sequence s
          JOIN pg_class c ON c.oid = s.seqrelid
          LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                               AND d.refclassid = 'pg_class'::regclass
          LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE c.relnamespace = 'goalrt'::regnamespace AND c.relname NOT LIKE 'alembic_version%'
         ORDER BY 1""",
    "extensions": """
        SELECT extname FROM pg_extension ORDER BY 1""",
    # The rows the schema itself inserts (default settings); empty before the schema exists.
    "settings": """
        SELECT key, value::text FROM goalrt.settings ORDER BY 1""",
    # Row-level security: which tables enable and force it, and their policies.
    "row_security": """
        SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
          FROM pg_class c WHERE c.relnamespace = 'goalrt'::regnamespace AND c.relkind = 'r'
           AND c.relname NOT LIKE 'alembic_version%'
         ORDER BY 1""",
    "policies": """
        SELECT tablename, policyname, permissive, roles::text, cmd, qual, with_check
          FROM pg_policies WHERE schemaname = 'goalrt' ORDER BY 1, 2""",
    "types": """
        SELECT t.typname, t.typtype FROM pg_type t
         WHERE t.typnamespace = 'goalrt'::regnamespace AND t.typname NOT LIKE '%alembic_version%'
         ORDER BY 1""",
}


def describe(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Return every kind of object of the goalrt schema, as sorted rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('goalrt.settings') IS NOT NULL").fetchone()
        has_settings = bool(row and row[0])
        return {
            kind: conn.execute(q).fetchall() if kind != "settings" or has_settings else []
            for kind, q in CATALOG_QUERIES.items()
        }
