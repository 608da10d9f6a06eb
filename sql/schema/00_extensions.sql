-- pgvector is optional: used where the server has it, never required.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        CREATE EXTENSION IF NOT EXISTS vector;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'goalrt: pgvector is available but this role may not create it; continuing without it';
END
$$;
