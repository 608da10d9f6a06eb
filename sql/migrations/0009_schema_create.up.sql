-- No role but the owner may create objects in goalrt's schemas (issue 15,
-- item 7). The SECURITY DEFINER functions run as the owner with
-- search_path = pg_catalog, <their schema>, pg_temp, so an object another
-- role creates there is called in place of pg_catalog's when its signature
-- fits better (goalrt.format(text, bigint) beats pg_catalog.format(text,
-- VARIADIC "any")) and runs as the owner. 0005 to 0008 granted CREATE on
-- goalrt, and on every fork's schema, to goalrt_admin.
--
-- CREATE is revoked here from every role but the schema's owner, on goalrt
-- and on the schema of every fork in goalrt.forks. What other roles already
-- put there is not dropped (a migration cannot tell a helper from a plant,
-- and a table holds data): one WARNING names it all, and
-- goalrt.foreign_objects() lists it until it is moved or dropped.

-- What roles other than the owners put in goalrt's schemas (this one and the
-- forks'), and who else may create objects there: a schema owned by a role
-- that is not (a member of) this schema's owner, a CREATE privilege, or an
-- object whose owner is not (a member of) its schema's owner (an extension
-- stands for its members; parts of an object, such as a table's row type,
-- go with it). Empty on a sound database. Superusers count as members of
-- every role.
CREATE FUNCTION goalrt.foreign_objects()
RETURNS TABLE (schema_name text, kind text, object text, role text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH home AS (
        SELECT c.relnamespace AS oid FROM pg_class c WHERE c.oid = 'goalrt.forks'::regclass
    ), s AS (
        SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n
         WHERE n.oid = (SELECT oid FROM home) OR n.nspname IN (SELECT f.schema_name FROM goalrt.forks f)
    ), objects (nsp, kind, object, owner, classid, objid) AS (
        SELECT relnamespace, 'relation', oid::regclass::text, relowner, 'pg_class'::regclass::oid, oid
          FROM pg_class WHERE relkind NOT IN ('i', 'I', 't')
        UNION ALL
        SELECT pronamespace, CASE prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
               oid::regprocedure::text, proowner, 'pg_proc'::regclass::oid, oid FROM pg_proc
        UNION ALL
        SELECT oprnamespace, 'operator', oid::regoperator::text, oprowner, 'pg_operator'::regclass::oid, oid
          FROM pg_operator
        UNION ALL
        SELECT typnamespace, 'type', oid::regtype::text, typowner, 'pg_type'::regclass::oid, oid FROM pg_type
        UNION ALL
        SELECT collnamespace, 'collation', oid::regcollation::text, collowner, 'pg_collation'::regclass::oid, oid
          FROM pg_collation
        UNION ALL
        SELECT connamespace, 'conversion', quote_ident(conname), conowner, 'pg_conversion'::regclass::oid, oid
          FROM pg_conversion
        UNION ALL
        SELECT cfgnamespace, 'text search configuration', oid::regconfig::text, cfgowner,
               'pg_ts_config'::regclass::oid, oid FROM pg_ts_config
        UNION ALL
        SELECT dictnamespace, 'text search dictionary', oid::regdictionary::text, dictowner,
               'pg_ts_dict'::regclass::oid, oid FROM pg_ts_dict
        UNION ALL
        SELECT extnamespace, 'extension', quote_ident(extname), extowner, 'pg_extension'::regclass::oid, oid
          FROM pg_extension
    )
    SELECT s.nspname::text, 'schema', quote_ident(s.nspname), s.nspowner::regrole::text
      FROM s, pg_namespace h
     WHERE h.oid = (SELECT oid FROM home) AND NOT pg_has_role(s.nspowner, h.nspowner, 'MEMBER')
    UNION ALL
    SELECT s.nspname::text, 'CREATE privilege', quote_ident(s.nspname),
           CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
      FROM s, aclexplode(s.nspacl) a
     WHERE a.privilege_type = 'CREATE' AND (a.grantee = 0 OR NOT pg_has_role(a.grantee, s.nspowner, 'MEMBER'))
    UNION ALL
    SELECT s.nspname::text, o.kind, o.object, o.owner::regrole::text
      FROM objects o JOIN s ON s.oid = o.nsp
     WHERE NOT pg_has_role(o.owner, s.nspowner, 'MEMBER')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype IN ('i', 'e'))
     ORDER BY 1, 2, 3
$$;

COMMENT ON FUNCTION goalrt.foreign_objects() IS
    'What roles other than the owners put in goalrt''s schemas, and who else may create there (empty when sound).';

REVOKE ALL ON FUNCTION goalrt.foreign_objects() FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION goalrt.foreign_objects() TO goalrt_reader, goalrt_writer, goalrt_admin;
END
$$;

DO $$
DECLARE
    s     record;
    found text;
BEGIN
    FOR s IN SELECT n.nspname, a.grantee
               FROM pg_namespace n, aclexplode(n.nspacl) a
              WHERE (n.nspname = 'goalrt' OR n.nspname IN (SELECT f.schema_name FROM goalrt.forks f))
                AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
                -- A fork's schema that another role owns is left as it is
                -- (REVOKE would fail); foreign_objects() names it.
                AND pg_has_role(current_user, n.nspowner, 'USAGE') LOOP
        EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %s CASCADE', s.nspname,
                       CASE s.grantee WHEN 0 THEN 'PUBLIC' ELSE s.grantee::regrole::text END);
    END LOOP;
    SELECT string_agg(format('%s %s (%s)', o.kind, o.object, o.role), '; ') INTO found
      FROM goalrt.foreign_objects() o;
    IF found IS NOT NULL THEN
        RAISE WARNING 'goalrt''s schemas hold what roles other than the owner put there or may create there, and goalrt''s functions could run it as the owner; move or drop it, or revoke (SELECT * FROM goalrt.foreign_objects()): %', found;
    END IF;
END
$$;
