-- Undo 0027_event_declarations.

CREATE OR REPLACE FUNCTION goalrt.load_gdl(workspace text, content_hash text, definitions jsonb, runtime jsonb)
RETURNS TABLE (version bigint, created boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    cur   goalrt.gdl_versions;
    v     bigint;
    item  jsonb;
BEGIN
    IF workspace IS NULL OR workspace = '' THEN
        RAISE EXCEPTION 'workspace must be a non-empty name' USING ERRCODE = 'GR008';
    END IF;
    IF content_hash IS NULL OR content_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'content_hash must be a sha256 in hex' USING ERRCODE = 'GR008';
    END IF;
    IF jsonb_typeof(definitions) IS DISTINCT FROM 'object' OR jsonb_typeof(runtime) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'definitions and runtime must be JSON objects' USING ERRCODE = 'GR008';
    END IF;
    -- One load at a time.
    PERFORM pg_advisory_xact_lock('goalrt.gdl_versions'::regclass::oid::integer, 0);
    SELECT * INTO cur FROM goalrt.gdl_versions g ORDER BY g.version DESC LIMIT 1;
    IF FOUND AND cur.content_hash = load_gdl.content_hash AND cur.workspace = load_gdl.workspace THEN
        RETURN QUERY SELECT cur.version, false;
        RETURN;
    END IF;
    INSERT INTO goalrt.gdl_versions AS g (workspace, content_hash, definitions)
    VALUES (load_gdl.workspace, load_gdl.content_hash,
            load_gdl.definitions || jsonb_build_object('runtime', load_gdl.runtime))
    RETURNING g.version INTO v;

    FOR item IN SELECT jsonb_array_elements(coalesce(runtime -> 'goal_types', '[]')) LOOP
        PERFORM goalrt.register_goal_type(item ->> 'name', item -> 'params_schema');
        UPDATE goalrt.goal_types t SET defaults = coalesce(item -> 'defaults', '{}'), gdl_version = v
         WHERE t.name = item ->> 'name';
    END LOOP;

    DELETE FROM goalrt.gdl_policies;
    INSERT INTO goalrt.gdl_policies (name, app, version, condition, text, wildcards, reads)
    SELECT x ->> 'name', x ->> 'app', v, x -> 'condition', x ->> 'text', coalesce(x -> 'wildcards', '{}'), x -> 'reads'
      FROM jsonb_array_elements(coalesce(runtime -> 'policies', '[]')) AS t(x);

    DELETE FROM goalrt.gdl_triggers;
    INSERT INTO goalrt.gdl_triggers (event_type, goal_name, version, params)
    SELECT x ->> 'event_type', x ->> 'goal_name', v, x -> 'params'
      FROM jsonb_array_elements(coalesce(runtime -> 'triggers', '[]')) AS t(x);

    IF cur.version IS NOT NULL THEN
        PERFORM goalrt.drop_limit(o ->> 'action', coalesce(o -> 'options' ->> 'key', ''))
           FROM jsonb_array_elements(coalesce(cur.definitions -> 'runtime' -> 'limits', '[]')) AS t(o)
          WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(runtime -> 'limits', '[]')) AS n(x)
                             WHERE n.x ->> 'action' = o ->> 'action');
    END IF;
    PERFORM goalrt.set_limit(x ->> 'action', x -> 'options')
       FROM jsonb_array_elements(coalesce(runtime -> 'limits', '[]')) AS t(x);
    PERFORM goalrt.install_schedules(v, runtime -> 'schedules');

    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('gdl', 'gdl.loaded', jsonb_build_object('version', v, 'workspace', workspace,
                                                      'content_hash', content_hash,
                                                      'previous', cur.version));
    PERFORM pg_notify('goalrt_gdl', v::text);
    RETURN QUERY SELECT v, true;
END
$$;

DROP TRIGGER IF EXISTS event_data_declared ON goalrt.event_data;
DROP FUNCTION goalrt.check_declared_events();
DROP TABLE goalrt.gdl_events;
