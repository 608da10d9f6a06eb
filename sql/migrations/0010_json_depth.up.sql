-- JSON nested deeper than 100 levels is refused in SQL at every function that
-- stores a value a caller gives (issue 15, item 6): goalrt.json_too_deep
-- tests, goalrt.json_depth_error raises GR010 naming the field. The functions
-- that store such values test their input; fire_triggers records a trigger
-- whose params are too deep as refused instead of refusing the append. See
-- docs/sql.md.

-- Nesting. jsonb takes JSON nested thousands of levels deep, which Python
-- cannot decode and recursive code cannot walk. Every function that stores a
-- JSON value a caller gives (event data and metadata, state values, goal
-- params and params schemas, step args, plan details, results, answers)
-- refuses one nested deeper than 100 levels of arrays and objects, counted as
-- goalrt/db/jsontext.py's MAX_JSON_DEPTH counts them: a scalar is 0, [] and
-- {} are 1, [[1]] is 2. A value is deeper than 100 exactly when an array or
-- object sits 100 levels below its root; the search stops at that level, so
-- it never recurses deeper and costs about 0.3 us for a small value (a
-- guard on the value's size would cost more than it saves).
CREATE FUNCTION goalrt.json_too_deep(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.jsonb_path_exists(value, 'strict $.**{100} ? (@.type() == "array" || @.type() == "object")')
$$;

-- Refuse `value` (where goalrt.json_too_deep holds) with GR010, in one line
-- naming `field`, how deep it nests and the limit. Callers test first, as
--   IF goalrt.json_too_deep(v) THEN PERFORM goalrt.json_depth_error('data', v); END IF;
-- (an IF of the inlined test costs a tenth of a PERFORM).
CREATE FUNCTION goalrt.json_depth_error(field text, value jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    deep integer := 100;  -- an array or object sits at this level below the root
    free integer;         -- none sits at this level (NULL until one is found)
    mid  integer;
BEGIN
    -- The depth is one more than the deepest such level: double, then halve.
    -- Searching very deep levels can exhaust the stack; then say "at least".
    BEGIN
        WHILE free IS NULL OR free - deep > 1 LOOP
            mid := CASE WHEN free IS NULL THEN deep * 2 ELSE (deep + free) / 2 END;
            IF jsonb_path_exists(value, format(
                   'strict $.**{%s} ? (@.type() == "array" || @.type() == "object")', mid)::jsonpath) THEN
                deep := mid;
            ELSE
                free := mid;
            END IF;
        END LOOP;
    EXCEPTION WHEN statement_too_complex THEN
        RAISE EXCEPTION '% is nested at least % levels deep; the limit is 100', field, deep + 1
            USING ERRCODE = 'GR010';
    END;
    RAISE EXCEPTION '% is nested % levels deep; the limit is 100', field, deep + 1 USING ERRCODE = 'GR010';
END
$$;

REVOKE ALL ON FUNCTION goalrt.json_too_deep(jsonb), goalrt.json_depth_error(text, jsonb) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION goalrt.json_too_deep(jsonb), goalrt.json_depth_error(text, jsonb)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.append_event(
    stream text, type text, data jsonb DEFAULT '{}', metadata jsonb DEFAULT '{}'
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    IF stream IS NULL OR stream = '' THEN
        RAISE EXCEPTION 'event stream must be a non-empty string' USING ERRCODE = 'GR002';
    END IF;
    IF type IS NULL OR type = '' THEN
        RAISE EXCEPTION 'event type must be a non-empty string' USING ERRCODE = 'GR002';
    END IF;
    IF type = 'state.changed' THEN
        RAISE EXCEPTION 'event type state.changed is reserved: change state with goalrt.change_state'
            USING ERRCODE = 'GR002';
    END IF;
    IF metadata IS NOT NULL AND jsonb_typeof(metadata) <> 'object' THEN
        RAISE EXCEPTION 'event metadata must be a JSON object, got %', jsonb_typeof(metadata)
            USING ERRCODE = 'GR002';
    END IF;
    IF goalrt.json_too_deep(data) THEN
        PERFORM goalrt.json_depth_error('data', data);
    END IF;
    IF goalrt.json_too_deep(metadata) THEN
        PERFORM goalrt.json_depth_error('metadata', metadata);
    END IF;
    INSERT INTO goalrt.event_data (stream, type, data, metadata)
    VALUES (append_event.stream, append_event.type,
            coalesce(append_event.data, 'null'::jsonb),
            coalesce(append_event.metadata, '{}'::jsonb))
    RETURNING event_data.id INTO new_id;
    PERFORM goalrt.match_appended(ARRAY[append_event.type], ARRAY[new_id]);
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.append_events(events jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    bad   record;
    ids   bigint[];
    types text[];
BEGIN
    IF events IS NULL OR jsonb_typeof(events) <> 'array' THEN
        RAISE EXCEPTION 'events must be a JSON array of event objects' USING ERRCODE = 'GR002';
    END IF;
    -- Validate the whole batch first so nothing of a bad batch is written
    -- and the error names the first offending element.
    SELECT i - 1 AS idx,
           CASE
             WHEN jsonb_typeof(x) <> 'object' THEN 'must be an object'
             WHEN jsonb_typeof(x -> 'stream') IS DISTINCT FROM 'string' OR x ->> 'stream' = ''
               THEN '.stream must be a non-empty string'
             WHEN jsonb_typeof(x -> 'type') IS DISTINCT FROM 'string' OR x ->> 'type' = ''
               THEN '.type must be a non-empty string'
             WHEN x ->> 'type' = 'state.changed'
               THEN '.type state.changed is reserved: change state with goalrt.change_state'
             WHEN x ? 'metadata' AND jsonb_typeof(x -> 'metadata') NOT IN ('object', 'null')
               THEN '.metadata must be a JSON object'
           END AS problem
      INTO bad
      FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i)
     WHERE jsonb_typeof(x) <> 'object'
        OR jsonb_typeof(x -> 'stream') IS DISTINCT FROM 'string' OR x ->> 'stream' = ''
        OR jsonb_typeof(x -> 'type') IS DISTINCT FROM 'string' OR x ->> 'type' = ''
        OR x ->> 'type' = 'state.changed'
        OR (x ? 'metadata' AND jsonb_typeof(x -> 'metadata') NOT IN ('object', 'null'))
     ORDER BY i
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'events[%]%', bad.idx,
            CASE WHEN bad.problem LIKE '.%' THEN bad.problem ELSE ' ' || bad.problem END
            USING ERRCODE = 'GR002';
    END IF;
    PERFORM goalrt.json_depth_error(format('events[%s].%s', i - 1, f), v)
       FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i),
            LATERAL (VALUES ('data', x -> 'data'), ('metadata', x -> 'metadata')) AS d(f, v)
      WHERE goalrt.json_too_deep(v);

    WITH ins AS (
        INSERT INTO goalrt.event_data (stream, type, data, metadata)
        SELECT x ->> 'stream', x ->> 'type',
               coalesce(x -> 'data', '{}'::jsonb),
               coalesce(nullif(x -> 'metadata', 'null'::jsonb), '{}'::jsonb)
          FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i)
         ORDER BY i
        RETURNING event_data.id, event_data.type
    )
    SELECT array_agg(ins.id ORDER BY ins.id), array_agg(DISTINCT ins.type) INTO ids, types FROM ins;
    PERFORM goalrt.match_appended(types, ids);
    -- Ids in the order of the array (the insert's order).
    RETURN QUERY SELECT u FROM unnest(ids) AS u;
END
$$;

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
    IF goalrt.json_too_deep(metadata) THEN
        PERFORM goalrt.json_depth_error('metadata', metadata);
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
    PERFORM goalrt.json_depth_error(format('changes[%s].value', i - 1), x -> 'value')
       FROM jsonb_array_elements(changes) WITH ORDINALITY AS t(x, i)
      WHERE goalrt.json_too_deep(x -> 'value');

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
    -- GDL policies see the state with the change applied; a broken one aborts it all.
    IF EXISTS (SELECT 1 FROM goalrt.gdl_policies) THEN
        PERFORM goalrt.check_policies(ARRAY(SELECT x ->> 'path' FROM jsonb_array_elements(changes) AS t(x)));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.register_goal_type(name text, params_schema jsonb DEFAULT '{}') RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$' THEN
        RAISE EXCEPTION 'invalid goal type name %: use letters, digits, _ . : - (starting with a letter or _)',
            coalesce(quote_literal(name), 'NULL') USING ERRCODE = 'GR008';
    END IF;
    IF params_schema IS NULL OR jsonb_typeof(params_schema) <> 'object' THEN
        RAISE EXCEPTION 'params_schema of goal type % must be a JSON object (a JSON Schema)', name
            USING ERRCODE = 'GR008';
    END IF;
    IF goalrt.json_too_deep(params_schema) THEN
        PERFORM goalrt.json_depth_error('params_schema', params_schema);
    END IF;
    INSERT INTO goalrt.goal_types AS t (name, params_schema)
    VALUES (register_goal_type.name, register_goal_type.params_schema)
    ON CONFLICT ON CONSTRAINT goal_types_pkey DO UPDATE
       SET params_schema = excluded.params_schema, registered_at = now()
     WHERE t.params_schema IS DISTINCT FROM excluded.params_schema;
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
    -- The goal type's defaults (GDL priority, deadline) unless the submit gives its own.
    IF gt.defaults <> '{}' AND jsonb_typeof(o) = 'object' THEN
        o := gt.defaults || o;
    END IF;
    IF goalrt.json_too_deep(params) THEN
        PERFORM goalrt.json_depth_error(label || 'params', params);
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

CREATE OR REPLACE FUNCTION goalrt.complete_steps_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (
    goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer, error text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    x       jsonb;
    g       goalrt.goals;
    s       goalrt.goal_steps;
    ep      bigint;
    sq      integer;
    nxt      goalrt.goal_steps;
    stream   text;
    delay    double precision;
    ev_ids   bigint[];
    ev_types text[];
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    -- Lock goals in id order: two workers' batches never deadlock.
    FOR x IN SELECT e FROM jsonb_array_elements(items) AS t(e) ORDER BY (e ->> 'goal_id')::bigint LOOP
        goal_id := (x ->> 'goal_id')::bigint;
        ep := (x ->> 'epoch')::bigint;
        sq := (x ->> 'seq')::integer;
        outcome := NULL; step_seq := NULL; action := NULL; args := NULL; attempt := NULL; error := NULL;
        IF x ->> 'outcome' IS NULL OR x ->> 'outcome' NOT IN ('complete', 'retry', 'fail', 'replan') THEN
            RAISE EXCEPTION 'items: outcome must be complete, retry, fail or replan (goal %)', goal_id
                USING ERRCODE = 'GR008';
        END IF;
        IF x ->> 'outcome' = 'replan' THEN
            IF jsonb_typeof(x -> 'steps') IS DISTINCT FROM 'array' THEN
                RAISE EXCEPTION 'items: a replan needs steps (goal %)', goal_id USING ERRCODE = 'GR008';
            END IF;
            SELECT p INTO error FROM (
                SELECT goalrt.step_problem(st, format('replan for goal %s: steps[%s]', goal_id, i - 1)) AS p
                  FROM jsonb_array_elements(x -> 'steps') WITH ORDINALITY AS t(st, i) ORDER BY i) q
             WHERE p IS NOT NULL LIMIT 1;
            IF error IS NOT NULL THEN
                RAISE EXCEPTION '%', error USING ERRCODE = 'GR008';
            END IF;
        END IF;
        IF goalrt.json_too_deep(x -> 'result') THEN
            PERFORM goalrt.json_depth_error(format('goal %s step %s: result', goal_id, sq), x -> 'result');
        END IF;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR UPDATE;
        IF NOT FOUND THEN
            outcome := 'refused'; error := format('goal %s does not exist', goal_id);
            RETURN NEXT;
            CONTINUE;
        END IF;
        stream := 'goal:' || g.id;
        SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = sq;

        IF NOT goalrt.holds_lease(g, worker_id, ep) OR g.step_seq IS DISTINCT FROM sq
           OR s.status IS DISTINCT FROM 'running' THEN
            -- A re-sent outcome whose commit was cut off: a complete left
            -- the step complete at this epoch; a retry, fail or replan left
            -- this worker's step.failed at this epoch in the goal's stream.
            IF x ->> 'outcome' = 'complete' AND s.status = 'complete' AND s.completed_epoch = ep
               OR x ->> 'outcome' <> 'complete' AND EXISTS (
                      SELECT 1 FROM goalrt.event_data e
                       WHERE e.stream = 'goal:' || g.id AND e.type = 'step.failed'
                         AND e.data -> 'seq' = to_jsonb(sq) AND e.data -> 'epoch' = to_jsonb(ep)
                         AND e.data ->> 'worker' = worker_id) THEN
                outcome := 'already_applied';
                IF goalrt.holds_lease(g, worker_id, ep) AND g.step_seq IS NOT NULL THEN
                    SELECT * INTO nxt FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
                    step_seq := nxt.seq; action := nxt.action; args := nxt.args; attempt := nxt.attempts;
                END IF;
                RETURN NEXT;
                CONTINUE;
            END IF;
            error := CASE WHEN NOT goalrt.holds_lease(g, worker_id, ep) THEN goalrt.lease_lost_reason(g, worker_id, ep)
                          ELSE format('step %s is not the running step (goal is at step %s)', sq, g.step_seq) END;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.result_refused',
                    jsonb_strip_nulls(jsonb_build_object(
                        'goal_id', g.id, 'seq', sq, 'worker', worker_id, 'epoch', ep,
                        'current_epoch', g.lease_epoch, 'outcome', x ->> 'outcome', 'reason', error)));
            outcome := 'refused';
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF x ->> 'outcome' = 'complete' THEN
            IF jsonb_typeof(x -> 'changes') = 'array' AND jsonb_array_length(x -> 'changes') > 0 THEN
                BEGIN
                    PERFORM goalrt.change_state(
                        x -> 'changes', stream,
                        jsonb_build_object('goal_id', g.id, 'seq', sq, 'attempt', s.attempts, 'epoch', ep,
                                           'worker', worker_id, 'idempotency_key', g.id || ':' || sq));
                EXCEPTION WHEN SQLSTATE 'GR003' OR SQLSTATE 'GR004' OR SQLSTATE 'GR002' THEN
                    outcome := 'change_refused';
                    error := SQLERRM || ' (' || SQLSTATE || ')';
                    RETURN NEXT;
                    CONTINUE;
                END;
            END IF;
            IF jsonb_typeof(x -> 'events') = 'array' AND jsonb_array_length(x -> 'events') > 0 THEN
                IF EXISTS (SELECT 1 FROM jsonb_array_elements(x -> 'events') e
                            WHERE jsonb_typeof(e -> 'type') IS DISTINCT FROM 'string' OR e ->> 'type' = ''
                               OR e ->> 'type' = 'state.changed' OR length(e ->> 'type') > 512) THEN
                    RAISE EXCEPTION 'goal %: events must be {"type", "data"} with a non-empty type (not state.changed)',
                        g.id USING ERRCODE = 'GR002';
                END IF;
                PERFORM goalrt.json_depth_error(format('goal %s step %s: events[%s].data', g.id, sq, i - 1),
                                                e -> 'data')
                   FROM jsonb_array_elements(x -> 'events') WITH ORDINALITY AS t(e, i)
                  WHERE goalrt.json_too_deep(e -> 'data');
                WITH ins AS (
                    INSERT INTO goalrt.event_data (stream, type, data, metadata)
                    SELECT stream, e ->> 'type', coalesce(e -> 'data', '{}'),
                           jsonb_build_object('goal_id', g.id, 'seq', sq, 'idempotency_key', g.id || ':' || sq)
                      FROM jsonb_array_elements(x -> 'events') WITH ORDINALITY AS t(e, i)
                     ORDER BY i
                    RETURNING event_data.id, event_data.type
                )
                SELECT array_agg(ins.id), array_agg(DISTINCT ins.type) INTO ev_ids, ev_types FROM ins;
                PERFORM goalrt.match_appended(ev_types, ev_ids);
            END IF;
            UPDATE goalrt.goal_steps st
               SET status = 'complete', result = x -> 'result', error = NULL, completed_epoch = ep,
                   finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.completed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'epoch', ep, 'worker', worker_id, 'result', x -> 'result'));
            PERFORM goalrt.release_limits(g.id);
            outcome := goalrt.advance_goal(
                g.id, goalrt.next_step(g.id, sq, g.plan_no),
                CASE WHEN coalesce((x ->> 'continue')::boolean, false) THEN worker_id END,
                lease_seconds, x -> 'result');
            SELECT * INTO g FROM goalrt.goals WHERE goals.id = g.id;
            IF outcome = 'continue' THEN
                SELECT * INTO nxt FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
                step_seq := nxt.seq; action := nxt.action; args := nxt.args; attempt := nxt.attempts;
            ELSIF outcome IN ('released', 'blocked', 'waiting') THEN
                step_seq := g.step_seq;
            END IF;
        ELSIF x ->> 'outcome' = 'replan' THEN
            -- The step failed for good; the worker planned around it.
            UPDATE goalrt.goal_steps st SET status = 'failed', error = x ->> 'error', finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'final', true, 'replanned', true,
                                       'epoch', ep, 'worker', worker_id));
            PERFORM goalrt.release_limits(g.id);
            outcome := goalrt.advance_goal(
                g.id,
                goalrt.insert_plan(g.id, x -> 'steps', coalesce(x ->> 'reason', 'step_failed'),
                                   CASE WHEN jsonb_typeof(x -> 'detail') = 'object' THEN x -> 'detail' END),
                CASE WHEN coalesce((x ->> 'continue')::boolean, false) THEN worker_id END,
                lease_seconds, NULL);
            SELECT * INTO g FROM goalrt.goals WHERE goals.id = g.id;
            IF outcome = 'continue' THEN
                SELECT * INTO nxt FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
                step_seq := nxt.seq; action := nxt.action; args := nxt.args; attempt := nxt.attempts;
            ELSIF outcome IN ('released', 'blocked', 'waiting') THEN
                step_seq := g.step_seq;
            END IF;
        ELSIF x ->> 'outcome' = 'retry' THEN
            delay := greatest(coalesce((x ->> 'retry_in')::double precision, 0), 0);
            PERFORM goalrt.release_limits(g.id);
            UPDATE goalrt.goal_steps st SET status = 'pending', error = x ->> 'error'
             WHERE st.goal_id = g.id AND st.seq = sq;
            UPDATE goalrt.goals
               SET run_at = now() + make_interval(secs => delay), lease_owner = NULL, lease_expires_at = NULL,
                   wake_at = CASE WHEN delay > 0 THEN now() + make_interval(secs => delay) END,
                   last_error = x ->> 'error', updated_at = now()
             WHERE goals.id = g.id;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'retry_in', delay, 'final', false,
                                       'epoch', ep, 'worker', worker_id));
            outcome := 'retry';
        ELSE
            UPDATE goalrt.goal_steps st SET status = 'failed', error = x ->> 'error', finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'final', true, 'epoch', ep, 'worker', worker_id));
            PERFORM goalrt.end_goal(g.id, 'failed', NULL, x ->> 'error', jsonb_build_object('seq', sq));
            outcome := 'failed';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.step_problem(step jsonb, label text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    kind text := coalesce(step ->> 'kind', 'action');
    a    jsonb := coalesce(step -> 'args', '{}');
    t    timestamptz;
    i    integer := 0;
    sub  jsonb;
    p    text;
BEGIN
    IF jsonb_typeof(step) IS DISTINCT FROM 'object' THEN
        RETURN label || ' must be an object {"action", "args"}';
    ELSIF kind NOT IN ('action', 'event', 'sleep', 'ask', 'children') THEN
        RETURN format('%s.kind %s is not a step kind (action, event, sleep, ask, children)', label, kind);
    ELSIF jsonb_typeof(step -> 'action') IS DISTINCT FROM 'string' OR step ->> 'action' = ''
          OR length(step ->> 'action') > 200 THEN
        RETURN label || '.action must be a non-empty string';
    ELSIF jsonb_typeof(a) <> 'object' AND kind <> 'action' THEN
        RETURN label || '.args must be an object';
    ELSIF step ? 'label' AND jsonb_typeof(step -> 'label') NOT IN ('string', 'null') THEN
        RETURN label || '.label must be a string';
    ELSIF step ? 'max_attempts' AND jsonb_typeof(step -> 'max_attempts') <> 'null'
          AND (jsonb_typeof(step -> 'max_attempts') <> 'number' OR (step ->> 'max_attempts') !~ '^[0-9]{1,9}$'
               OR (step ->> 'max_attempts')::integer < 1) THEN
        RETURN label || '.max_attempts must be an integer from 1 to 999999999';
    END IF;
    IF goalrt.json_too_deep(a) THEN
        PERFORM goalrt.json_depth_error(label || '.args', a);
    END IF;
    IF kind = 'action' THEN
        RETURN NULL;
    END IF;
    IF a ? 'timeout' AND (jsonb_typeof(a -> 'timeout') <> 'number' OR (a ->> 'timeout')::numeric < 0) THEN
        RETURN label || '.args.timeout must be a number of seconds >= 0';
    END IF;
    IF a ? 'on_timeout' THEN
        IF jsonb_typeof(a -> 'on_timeout') <> 'array' THEN
            RETURN label || '.args.on_timeout must be an array of steps';
        END IF;
        FOR sub IN SELECT e FROM jsonb_array_elements(a -> 'on_timeout') AS e LOOP
            p := goalrt.step_problem(sub, format('%s.args.on_timeout[%s]', label, i));
            IF p IS NOT NULL THEN
                RETURN p;
            END IF;
            i := i + 1;
        END LOOP;
    END IF;
    IF kind = 'event' THEN
        IF jsonb_typeof(a -> 'event') IS DISTINCT FROM 'string' OR a ->> 'event' = '' THEN
            RETURN label || '.args.event must be an event type';
        ELSIF a ->> 'event' ~ '^(goal|step)\.' THEN
            RETURN label || '.args.event: goalrt''s own goal.* and step.* events cannot be waited for '
                || '(wait for child goals instead)';
        ELSIF a ? 'where' AND jsonb_typeof(a -> 'where') <> 'object'
              AND NOT (jsonb_typeof(a -> 'where') = 'array' AND jsonb_array_length(a -> 'where') > 0
                       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(a -> 'where') f
                                        WHERE jsonb_typeof(f) <> 'object')) THEN
            RETURN label || '.args.where must be an object (the event data must contain it) or a list of them';
        ELSIF a ? 'since' AND coalesce(a ->> 'since', '') NOT IN ('submit', 'wait') THEN
            RETURN label || '.args.since must be "submit" or "wait"';
        END IF;
    ELSIF kind = 'sleep' THEN
        IF a ? 'seconds' = a ? 'until' THEN
            RETURN label || '.args: give seconds or until (one of them)';
        ELSIF a ? 'seconds' AND (jsonb_typeof(a -> 'seconds') <> 'number' OR (a ->> 'seconds')::numeric < 0) THEN
            RETURN label || '.args.seconds must be a number >= 0';
        ELSIF a ? 'until' THEN
            BEGIN
                t := (a ->> 'until')::timestamptz;
            EXCEPTION WHEN OTHERS THEN
                t := NULL;
            END;
            IF jsonb_typeof(a -> 'until') <> 'string' OR t IS NULL OR NOT isfinite(t) THEN
                RETURN label || '.args.until must be a time (ISO 8601)';
            END IF;
        END IF;
    ELSIF kind = 'ask' THEN
        IF jsonb_typeof(a -> 'prompt') IS DISTINCT FROM 'string' THEN
            RETURN label || '.args.prompt must be a string';
        ELSIF a ? 'schema' AND jsonb_typeof(a -> 'schema') <> 'object' THEN
            RETURN label || '.args.schema must be a JSON Schema object';
        END IF;
    ELSIF kind = 'children' THEN
        IF jsonb_typeof(a -> 'goals') IS DISTINCT FROM 'array' THEN
            RETURN label || '.args.goals must be an array of {"name", "params", "options"}';
        ELSIF coalesce(a ->> 'mode', 'all') NOT IN ('all', 'any') THEN
            RETURN label || '.args.mode must be "all" or "any"';
        ELSIF coalesce(a ->> 'on_failure', 'fail') NOT IN ('fail', 'continue') THEN
            RETURN label || '.args.on_failure must be "fail" or "continue"';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.insert_plan(p_goal bigint, steps jsonb, reason text, detail jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    g     goalrt.goals;
    first integer;
BEGIN
    IF goalrt.json_too_deep(detail) THEN
        PERFORM goalrt.json_depth_error(format('plan for goal %s: detail', p_goal), detail);
    END IF;
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal;
    UPDATE goalrt.goal_steps st SET status = 'superseded'
     WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
    first := coalesce((SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id), 0) + 1;
    INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, kind, action, args, label, max_attempts)
    SELECT g.id, first + i::integer - 1, g.plan_no + 1, coalesce(s ->> 'kind', 'action'), s ->> 'action',
           coalesce(s -> 'args', '{}'), s ->> 'label', (s ->> 'max_attempts')::integer
      FROM jsonb_array_elements(steps) WITH ORDINALITY AS t(s, i);
    UPDATE goalrt.goals SET plan_no = g.plan_no + 1, step_seq = NULL, updated_at = now() WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.planned',
            jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'plan_no', g.plan_no + 1, 'first_seq', first,
                                                 'steps', steps, 'reason', reason, 'planner', detail)));
    RETURN CASE WHEN jsonb_array_length(steps) > 0 THEN first END;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.resume_goal(goal_id bigint, data jsonb, actor text DEFAULT NULL)
RETURNS TABLE (id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    g       goalrt.goals;
    s       goalrt.goal_steps;
    problem text;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = resume_goal.goal_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal % does not exist', coalesce(resume_goal.goal_id::text, 'NULL') USING ERRCODE = 'GR009';
    END IF;
    SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
    IF g.status <> 'waiting' OR s.kind IS DISTINCT FROM 'ask' THEN
        RAISE EXCEPTION 'goal % is not waiting for an answer (%)', g.id,
            CASE WHEN g.status <> 'waiting' THEN 'it is ' || g.status
                 ELSE format('it waits for %s %s', s.kind, s.action) END
            USING ERRCODE = 'GR007';
    END IF;
    IF goalrt.json_too_deep(data) THEN
        PERFORM goalrt.json_depth_error('data', data);
    END IF;
    problem := goalrt.json_problem(coalesce(s.args -> 'schema', '{}'), data, 'data');
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'invalid answer for goal %: %', g.id, problem USING ERRCODE = 'GR008';
    END IF;
    RETURN QUERY SELECT g.id, goalrt.finish_wait(g.id, data, false, jsonb_strip_nulls(jsonb_build_object('by', actor)));
END
$$;

CREATE OR REPLACE FUNCTION goalrt.fire_triggers(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m       record;
    params  jsonb;
    created boolean := false;
    r       record;
BEGIN
    FOR m IN
        SELECT n.id, n.type, n.data, t.goal_name, t.params
          FROM goalrt.event_data n
          JOIN goalrt.gdl_triggers t ON t.event_type = n.type
         WHERE n.id = ANY (ids) AND t.event_type = ANY (types)
         ORDER BY n.id, t.goal_name
    LOOP
        SELECT jsonb_strip_nulls(coalesce(jsonb_object_agg(
                   p.key, CASE WHEN p.value ? 'field' THEN m.data -> (p.value ->> 'field') ELSE p.value -> 'value' END),
                   '{}'))
          INTO params
          FROM jsonb_each(m.params) p;
        BEGIN
            SELECT * INTO r FROM goalrt.submit_one(
                m.goal_name, params, jsonb_build_object('key', 'event:' || m.id || ':' || m.goal_name), '');
            created := created OR r.created;
        EXCEPTION WHEN SQLSTATE 'GR008' OR SQLSTATE 'GR010' THEN
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('gdl', 'gdl.trigger_refused',
                    jsonb_build_object('event_id', m.id, 'event_type', m.type, 'goal', m.goal_name,
                                       'params', params, 'error', SQLERRM));
        END;
    END LOOP;
    IF created THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
END
$$;
