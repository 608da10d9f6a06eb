-- Back to 0008: goalrt_admin may create objects in goalrt and in the forks'
-- schemas again (grants a DBA had given other roles are not restored).

DROP FUNCTION goalrt.foreign_objects();

DO $$
DECLARE
    s text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'goalrt_admin') THEN
        RETURN;
    END IF;
    FOR s IN SELECT n.nspname FROM pg_namespace n
              WHERE n.nspname = 'goalrt' OR n.nspname IN (SELECT f.schema_name FROM goalrt.forks f) LOOP
        EXECUTE format('GRANT CREATE ON SCHEMA %I TO goalrt_admin', s);
    END LOOP;
END
$$;
