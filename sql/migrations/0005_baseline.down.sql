-- Undo the baseline: remove everything goalrt created, data included (events
-- too: going below the baseline is starting over). Forks' schemas go with
-- the registry. Every table, view, sequence, type and function of schema
-- goalrt is dropped, with CASCADE, so whatever depends on them goes too; the
-- schema itself stays (alembic keeps its version table there), and so do the
-- cluster-wide roles and the vector extension, which other databases or
-- applications may share.
DO $$
DECLARE
    drops text[];
    stmt  text;
BEGIN
    IF to_regclass('goalrt.forks') IS NOT NULL THEN
        SELECT array_agg(format('DROP SCHEMA IF EXISTS %I CASCADE', schema_name)) INTO drops FROM goalrt.forks;
        FOREACH stmt IN ARRAY coalesce(drops, '{}') LOOP
            EXECUTE stmt;
        END LOOP;
    END IF;
    -- Each list is read before its drops run; IF EXISTS skips what an
    -- earlier CASCADE removed. Tables and views first: their identity
    -- sequences go with them, and the sequences left are standalone.
    SELECT array_agg(format('DROP %s IF EXISTS goalrt.%I CASCADE',
                            CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                           WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                            c.relname))
      INTO drops
      FROM pg_class c
     WHERE c.relnamespace = 'goalrt'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND c.relname NOT LIKE 'alembic_version%';
    FOREACH stmt IN ARRAY coalesce(drops, '{}') LOOP
        EXECUTE stmt;
    END LOOP;
    SELECT array_agg(format('DROP %s IF EXISTS goalrt.%I CASCADE',
                            CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TYPE' END, c.relname))
      INTO drops
      FROM pg_class c
     WHERE c.relnamespace = 'goalrt'::regnamespace AND c.relkind IN ('S', 'c')
       AND c.relname NOT LIKE 'alembic_version%';
    FOREACH stmt IN ARRAY coalesce(drops, '{}') LOOP
        EXECUTE stmt;
    END LOOP;
    SELECT array_agg(format('DROP %s IF EXISTS %s CASCADE',
                            CASE p.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END, p.oid::regprocedure))
      INTO drops
      FROM pg_proc p
     WHERE p.pronamespace = 'goalrt'::regnamespace;
    FOREACH stmt IN ARRAY coalesce(drops, '{}') LOOP
        EXECUTE stmt;
    END LOOP;
    SELECT array_agg(format('DROP %s IF EXISTS goalrt.%I CASCADE',
                            CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname))
      INTO drops
      FROM pg_type t
     WHERE t.typnamespace = 'goalrt'::regnamespace AND t.typtype IN ('d', 'e', 'r');
    FOREACH stmt IN ARRAY coalesce(drops, '{}') LOOP
        EXECUTE stmt;
    END LOOP;
END
$$;
