-- goalrt migration 0005 (down): remove the GDL definitions.
--
-- Restores 0004's change_state, match_appended and submit_one, then drops
-- what 0005 added. Goals submitted from GDL definitions stay as they are.

CREATE OR REPLACE FUNCTION goalrt.change_state(changes jsonb, stream text DEFAULT 'state', metadata jsonb DEFAULT '{}')
RETURNS TABLE (event_id bigint, path text, version bigint, value jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    bad    record;
    new_id bigint;
BEGIN
    IF changes IS NULL OR jsonb_typeof(changes) <> 'array' OR jsonb_array_length(changes) = 0 THEN
        RAISE EXCEPTION 'changes must be a non-empty JSON array of change objects' USING ERRCODE = 'GR003';
    END IF;
    IF stream IS NULL OR stream = '' OR length(stream) > 512 THEN
        RAISE EXCEPTION 'event stream must be a non-empty string of at most 512 characters' USING ERRCODE = 'GR002';
    END IF;
    IF metadata IS NOT NULL AND jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'event metadata must be a JSON object, got %', jsonb_typeof(metadata) USING ERRCODE = 'GR002';
    END IF;

    -- Validate the whole set first: the error names the first bad change.
    SELECT v.idx, v.problem INTO bad
      FROM (SELECT i - 1 AS idx,
                   CASE
                     WHEN jsonb_typeof(x) <> 'object' THEN ' must be an object'
                     WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(x) k
                                   WHERE k NOT IN ('op', 'path', 'value', 'by', 'expect_version'))
                       THEN '.' || (SELECT min(k) FROM jsonb_object_keys(x) k
                                     WHERE k NOT IN ('op', 'path', 'value', 'by', 'expect_version'))
                            || ' is not a field of a change (op, path, value, by, expect_version)'
                     WHEN jsonb_typeof(x -> 'op') IS DISTINCT FROM 'string'
                          OR x ->> 'op' NOT IN ('set', 'delete', 'inc')
                       THEN '.op must be "set", "delete" or "inc"'
                     WHEN jsonb_typeof(x -> 'path') IS DISTINCT FROM 'string'
                       THEN '.path must be a string'
                     WHEN NOT goalrt.valid_path(x ->> 'path')
                       THEN '.path ' || quote_literal(left(x ->> 'path', 80))
                            || CASE WHEN length(x ->> 'path') > 512 THEN ' is longer than 512 characters'
                                    ELSE ' is not a valid path (dot-separated segments of letters, digits, _ - : @)' END
                     WHEN x ->> 'op' = 'set' AND NOT x ? 'value' THEN '.value is required for set'
                     WHEN x ->> 'op' <> 'set' AND x ? 'value' THEN '.value is only for set'
                     WHEN x ->> 'op' = 'inc' AND jsonb_typeof(x -> 'by') IS DISTINCT FROM 'number'
                       THEN '.by must be a number'
                     WHEN x ->> 'op' <> 'inc' AND x ? 'by' THEN '.by is only for inc'
                     WHEN x ? 'expect_version' AND jsonb_typeof(x -> 'expect_version') <> 'null'
                          AND (jsonb_typeof(x -> 'expect_version') <> 'number'
                               OR (x ->> 'expect_version') !~ '^[0-9]{1,18}$')
                       THEN '.expect_version must be a non-negative integer'
                   END AS problem
              FROM jsonb_array_elements(changes) WITH ORDINALITY AS t(x, i)) v
     WHERE v.problem IS NOT NULL
     ORDER BY v.idx
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'changes[%]%', bad.idx, bad.problem USING ERRCODE = 'GR003';
    END IF;
    SELECT x ->> 'path' AS p INTO bad
      FROM jsonb_array_elements(changes) AS t(x)
     GROUP BY x ->> 'path' HAVING count(*) > 1
     ORDER BY 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'path % appears more than once in one change set', bad.p USING ERRCODE = 'GR003';
    END IF;

    PERFORM set_config('goalrt.applying', 'on', true);
    -- Lock every path in byte order: a new path by inserting a placeholder
    -- (version 0, never committed as such), an existing one by the
    -- conflict branch, which locks the row even though `WHERE false`
    -- updates nothing.
    INSERT INTO goalrt.state_data AS s (path, value, version, inherited_pos)
    SELECT x ->> 'path', NULL, 0, 0
      FROM jsonb_array_elements(changes) AS t(x)
     ORDER BY x ->> 'path' COLLATE "C"
    ON CONFLICT ON CONSTRAINT state_data_pkey DO UPDATE SET version = s.version WHERE false;

    -- Under the locks (READ COMMITTED: this statement sees the latest commit).
    SELECT i - 1 AS idx, s.path AS p, s.version AS found, s.value AS current,
           (x ->> 'expect_version')::bigint AS expected, x ->> 'op' AS op
      INTO bad
      FROM jsonb_array_elements(changes) WITH ORDINALITY AS t(x, i)
      JOIN goalrt.state_data s ON s.path = x ->> 'path'
     WHERE (jsonb_typeof(x -> 'expect_version') = 'number' AND (x ->> 'expect_version')::bigint <> s.version)
        OR (x ->> 'op' = 'inc' AND s.value IS NOT NULL AND jsonb_typeof(s.value) <> 'number')
     ORDER BY i
     LIMIT 1;
    IF FOUND THEN
        PERFORM set_config('goalrt.applying', 'off', true);
        IF bad.op = 'inc' AND bad.current IS NOT NULL AND jsonb_typeof(bad.current) <> 'number'
           AND (bad.expected IS NULL OR bad.expected = bad.found) THEN
            RAISE EXCEPTION 'changes[%]: cannot inc path %: it holds a %, not a number',
                bad.idx, bad.p, jsonb_typeof(bad.current) USING ERRCODE = 'GR003';
        END IF;
        RAISE EXCEPTION 'version conflict on path %: expected version %, found %', bad.p, bad.expected, bad.found
            USING ERRCODE = 'GR004';
    END IF;

    INSERT INTO goalrt.event_data (stream, type, data, metadata)
    VALUES (change_state.stream, 'state.changed', jsonb_build_object('changes', changes),
            coalesce(change_state.metadata, '{}'::jsonb))
    RETURNING event_data.id INTO new_id;
    -- Goals watching these paths (maintained goals) may resume.
    PERFORM goalrt.match_appended(ARRAY['state.changed'], ARRAY[new_id]);

    RETURN QUERY
    UPDATE goalrt.state_data s
       SET value = CASE x ->> 'op'
                     WHEN 'set' THEN x -> 'value'
                     WHEN 'delete' THEN NULL
                     ELSE to_jsonb(coalesce(s.value::numeric, 0) + (x -> 'by')::numeric)
                   END,
           version = s.version + 1,
           event_id = new_id,
           inherited_pos = NULL
      FROM jsonb_array_elements(changes) AS t(x)
     WHERE s.path = x ->> 'path'
    RETURNING new_id, s.path::text, s.version, s.value;
    PERFORM set_config('goalrt.applying', 'off', true);
END
$$;

CREATE OR REPLACE FUNCTION goalrt.match_appended(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    k integer;
    m record;
BEGIN
    FOREACH k IN ARRAY ARRAY(SELECT DISTINCT goalrt.wait_lock_key(t) FROM unnest(types) AS t ORDER BY 1) LOOP
        PERFORM pg_advisory_xact_lock_shared('goalrt.goal_waits'::regclass::oid::integer, k);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM goalrt.goal_waits w WHERE w.event_type = ANY (types)) THEN
        RETURN;
    END IF;
    FOR m IN
        SELECT DISTINCT ON (w.goal_id) w.goal_id, n.id, n.stream, n.type, n.data
          FROM goalrt.event_data n
          CROSS JOIN LATERAL (
              SELECT w0.goal_id, w0.since_id, w0.filter FROM goalrt.goal_waits w0
               WHERE w0.event_type = n.type AND w0.match_key IS NULL
              UNION ALL
              SELECT w1.goal_id, w1.since_id, w1.filter FROM goalrt.goal_waits w1
               WHERE w1.event_type = n.type AND w1.match_key = ANY (goalrt.match_keys(n.data))
          ) w
         WHERE n.id = ANY (ids) AND n.id > w.since_id AND (w.filter = '{}' OR n.data @> w.filter)
         ORDER BY w.goal_id, n.id
    LOOP
        PERFORM goalrt.finish_wait(
            m.goal_id,
            jsonb_build_object('event', jsonb_build_object('id', m.id, 'stream', m.stream, 'type', m.type,
                                                           'data', m.data)),
            false, NULL);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.submit_one(name text, params jsonb, options jsonb, label text)
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    gt       goalrt.goal_types;
    problem  text;
    bad_key  text;
    o        jsonb := coalesce(options, '{}');
    prio     integer;
    start_at timestamptz := now();
    gkey     text;
    parent   bigint;
    deadline timestamptz;
    new_id   bigint;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION '%name must be a goal type name', label USING ERRCODE = 'GR008';
    END IF;
    SELECT * INTO gt FROM goalrt.goal_types t WHERE t.name = submit_one.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION '%unknown goal type %: %', label, quote_literal(name),
            coalesce('registered: ' || (SELECT string_agg(t.name, ', ' ORDER BY t.name) FROM goalrt.goal_types t),
                     'no goal types are registered (start a worker with --handlers, or submit with --handlers)')
            USING ERRCODE = 'GR008';
    END IF;
    problem := goalrt.params_problem(gt.params_schema, coalesce(params, '{}'));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%invalid params for goal %: %', label, name, problem USING ERRCODE = 'GR008';
    END IF;

    IF jsonb_typeof(o) <> 'object' THEN
        RAISE EXCEPTION '%options must be a JSON object', label USING ERRCODE = 'GR008';
    END IF;
    SELECT min(k) INTO bad_key FROM jsonb_object_keys(o) k
     WHERE k NOT IN ('priority', 'run_at', 'delay', 'key', 'parent_id', 'partition_key', 'deadline');
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION '%options.% is not an option (priority, run_at, delay, key, parent_id, partition_key, deadline)',
            label, bad_key USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'priority' THEN
        IF jsonb_typeof(o -> 'priority') <> 'number' OR (o ->> 'priority') !~ '^-?[0-9]{1,9}$' THEN
            RAISE EXCEPTION '%options.priority must be an integer', label USING ERRCODE = 'GR008';
        END IF;
        prio := (o ->> 'priority')::integer;
    END IF;
    IF o ? 'run_at' AND o ? 'delay' THEN
        RAISE EXCEPTION '%options: give run_at or delay, not both', label USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'run_at' THEN
        BEGIN
            start_at := (o ->> 'run_at')::timestamptz;
        EXCEPTION WHEN OTHERS THEN
            start_at := NULL;
        END;
        IF jsonb_typeof(o -> 'run_at') <> 'string' OR start_at IS NULL OR NOT isfinite(start_at) THEN
            RAISE EXCEPTION '%options.run_at must be a time (ISO 8601, e.g. 2026-11-21T10:00:00Z)', label
                USING ERRCODE = 'GR008';
        END IF;
    END IF;
    IF o ? 'delay' THEN
        IF jsonb_typeof(o -> 'delay') <> 'number' OR (o ->> 'delay')::numeric < 0
           OR (o ->> 'delay')::numeric > 3153600000 THEN
            RAISE EXCEPTION '%options.delay must be a number of seconds >= 0', label USING ERRCODE = 'GR008';
        END IF;
        start_at := now() + make_interval(secs => (o ->> 'delay')::double precision);
    END IF;
    IF o ? 'key' AND jsonb_typeof(o -> 'key') <> 'null' THEN
        IF jsonb_typeof(o -> 'key') <> 'string' OR o ->> 'key' = '' OR length(o ->> 'key') > 512 THEN
            RAISE EXCEPTION '%options.key must be a non-empty string of at most 512 characters', label
                USING ERRCODE = 'GR008';
        END IF;
        gkey := o ->> 'key';
    END IF;
    IF o ? 'parent_id' AND jsonb_typeof(o -> 'parent_id') <> 'null' THEN
        IF jsonb_typeof(o -> 'parent_id') <> 'number' OR (o ->> 'parent_id') !~ '^[0-9]{1,18}$' THEN
            RAISE EXCEPTION '%options.parent_id must be a goal id', label USING ERRCODE = 'GR008';
        END IF;
        parent := (o ->> 'parent_id')::bigint;
        IF NOT EXISTS (SELECT 1 FROM goalrt.goals g WHERE g.id = parent) THEN
            RAISE EXCEPTION '%options.parent_id: goal % does not exist', label, parent USING ERRCODE = 'GR009';
        END IF;
    END IF;
    IF o ? 'deadline' AND jsonb_typeof(o -> 'deadline') <> 'null' THEN
        IF jsonb_typeof(o -> 'deadline') = 'number' AND (o ->> 'deadline')::numeric > 0
           AND (o ->> 'deadline')::numeric <= 3153600000 THEN
            deadline := now() + make_interval(secs => (o ->> 'deadline')::double precision);
        ELSIF jsonb_typeof(o -> 'deadline') = 'string' THEN
            BEGIN
                deadline := (o ->> 'deadline')::timestamptz;
            EXCEPTION WHEN OTHERS THEN
                deadline := NULL;
            END;
        END IF;
        IF deadline IS NULL OR NOT isfinite(deadline) THEN
            RAISE EXCEPTION '%options.deadline must be a time (ISO 8601) or a number of seconds > 0 from now', label
                USING ERRCODE = 'GR008';
        END IF;
    END IF;
    IF o ? 'partition_key' AND jsonb_typeof(o -> 'partition_key') NOT IN ('string', 'null') THEN
        RAISE EXCEPTION '%options.partition_key must be a string', label USING ERRCODE = 'GR008';
    END IF;

    IF gkey IS NOT NULL THEN
        SELECT g.id INTO new_id FROM goalrt.goals g WHERE g.idempotency_key = gkey;
        IF FOUND THEN
            RETURN QUERY SELECT new_id, false;
            RETURN;
        END IF;
    END IF;
    -- A concurrent submit with the same key: ON CONFLICT waits for it and
    -- then inserts nothing; the next statement sees its goal.
    INSERT INTO goalrt.goals AS g (name, params, priority, run_at, idempotency_key, parent_id, partition_key,
                                   wake_at, deadline_at)
    VALUES (submit_one.name, coalesce(params, '{}'), coalesce(prio, 0), start_at, gkey, parent,
            o ->> 'partition_key', CASE WHEN start_at > now() THEN start_at END, deadline)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING g.id INTO new_id;
    IF new_id IS NULL THEN
        SELECT g.id INTO new_id FROM goalrt.goals g WHERE g.idempotency_key = gkey;
        RETURN QUERY SELECT new_id, false;
        RETURN;
    END IF;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || new_id, 'goal.submitted',
            jsonb_strip_nulls(jsonb_build_object(
                'goal_id', new_id, 'name', name, 'params', coalesce(params, '{}'), 'priority', coalesce(prio, 0),
                'run_at', start_at, 'key', gkey, 'parent_id', parent, 'partition_key', o ->> 'partition_key',
                'deadline', deadline)));
    RETURN QUERY SELECT new_id, true;
END
$$;

DROP FUNCTION goalrt.load_gdl(text, text, jsonb, jsonb);
DROP FUNCTION goalrt.fire_triggers(text[], bigint[]);
DROP FUNCTION goalrt.check_policies(text[]);
DROP FUNCTION goalrt.policy_key_live(text);
DROP FUNCTION goalrt.policy_keys(text);
DROP FUNCTION goalrt.policy_holds(jsonb, jsonb);
DROP FUNCTION goalrt.policy_equal(jsonb, jsonb);
DROP FUNCTION goalrt.policy_term(jsonb, jsonb);
ALTER TABLE goalrt.goal_types DROP COLUMN defaults;
DROP TABLE goalrt.gdl_triggers;
DROP TABLE goalrt.gdl_policies;
DROP TABLE goalrt.gdl_versions;
