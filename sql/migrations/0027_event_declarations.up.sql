-- GDL event declarations enforced (issue 20 item 2): load_gdl stores each declared event type's schema in
-- goalrt.gdl_events, and a statement trigger on the log refuses an append of a declared type whose data
-- does not match (GR002, naming the field). The trigger exists only while declarations do.

CREATE TABLE goalrt.gdl_events (
    type    text PRIMARY KEY,
    version bigint NOT NULL REFERENCES goalrt.gdl_versions (version),
    schema  jsonb NOT NULL CHECK (jsonb_typeof(schema) = 'object')
);

COMMENT ON TABLE goalrt.gdl_events IS
    'The current GDL event declarations: an appended event of a declared type must match its schema.';

CREATE FUNCTION goalrt.check_declared_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    bad record;
BEGIN
    SELECT q.type, q.problem INTO bad
      FROM (SELECT n.id, n.type, goalrt.json_problem(d.schema, n.data, 'data') AS problem
              FROM new_rows n JOIN goalrt.gdl_events d ON d.type = n.type) q
     WHERE q.problem IS NOT NULL
     ORDER BY q.id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event %: % (as declared in GDL)', bad.type, bad.problem USING ERRCODE = 'GR002';
    END IF;
    RETURN NULL;
END
$$;


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

    DELETE FROM goalrt.gdl_events;
    INSERT INTO goalrt.gdl_events (type, version, schema)
    SELECT x ->> 'type', v, x -> 'schema'
      FROM jsonb_array_elements(coalesce(runtime -> 'events', '[]')) AS t(x);
    -- The check of appends runs only while there are declarations (see check_declared_events).
    IF EXISTS (SELECT 1 FROM goalrt.gdl_events) AND NOT EXISTS (
        SELECT 1 FROM pg_trigger t WHERE t.tgrelid = 'goalrt.event_data'::regclass AND t.tgname = 'event_data_declared')
    THEN
        EXECUTE 'CREATE TRIGGER event_data_declared AFTER INSERT ON goalrt.event_data '
                'REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION goalrt.check_declared_events()';
    ELSIF NOT EXISTS (SELECT 1 FROM goalrt.gdl_events) THEN
        EXECUTE 'DROP TRIGGER IF EXISTS event_data_declared ON goalrt.event_data';
    END IF;

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

-- The version loaded now declares its events too: their schemas as load_gdl would install them (what
-- runtime_json builds with pydantic, without the titles), so an unchanged workspace is checked at once.
INSERT INTO goalrt.gdl_events (type, version, schema)
SELECT ev ->> 'name', cur.version,
       jsonb_build_object(
           'type', 'object', 'additionalProperties', false,
           'required', coalesce((SELECT jsonb_agg(f.key ORDER BY f.key) FROM jsonb_each_text(ev -> 'fields') f), '[]'),
           'properties', coalesce((SELECT jsonb_object_agg(f.key, CASE f.value
                                                                    WHEN 'any' THEN '{}'::jsonb
                                                                    WHEN 'integer' THEN '{"type": "integer"}'
                                                                    WHEN 'number' THEN '{"type": "number"}'
                                                                    WHEN 'boolean' THEN '{"type": "boolean"}'
                                                                    ELSE '{"type": "string"}'
                                                                  END)
                                     FROM jsonb_each_text(ev -> 'fields') f), '{}'))
  FROM (SELECT g.version, g.definitions FROM goalrt.gdl_versions g ORDER BY g.version DESC LIMIT 1) cur,
       LATERAL (SELECT a.value AS app FROM jsonb_each(cur.definitions -> 'apps') a
                UNION ALL SELECT cur.definitions -> 'shared') apps,
       jsonb_array_elements(CASE WHEN jsonb_typeof(apps.app -> 'events') = 'array'
                                 THEN apps.app -> 'events' ELSE '[]' END) ev
ON CONFLICT (type) DO NOTHING;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM goalrt.gdl_events) THEN
        CREATE TRIGGER event_data_declared
            AFTER INSERT ON goalrt.event_data REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION goalrt.check_declared_events();
    END IF;
END
$$;

REVOKE ALL ON TABLE goalrt.gdl_events FROM PUBLIC;
REVOKE ALL ON FUNCTION goalrt.check_declared_events() FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    GRANT SELECT ON goalrt.gdl_events TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
END
$$;
