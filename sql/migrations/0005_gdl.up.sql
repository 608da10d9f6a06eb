-- goalrt migration 0005: GDL definitions in the database.
--
-- `goalrt gdl load` stores a workspace's compiled definitions here, one row
-- per version (a new version only when the content hash changes), and
-- installs what the database itself enforces or runs:
--
--   gdl_versions   every loaded version: workspace, content hash, the
--                  compiled JSON (what workers plan with)
--   gdl_policies   the current version's policies, checked by change_state
--                  after every change: a change that breaks one is refused
--                  (SQLSTATE GR003, message "policy_violation: ...") and
--                  nothing of it is applied
--   gdl_triggers   the current version's `on event` triggers: an appended
--                  event of the type submits the goal in the same transaction
--   goal_types.defaults   a GDL goal's priority and deadline, applied at
--                  submit unless the submit gives its own
--
-- Which version a goal runs: a plan is data (its steps are rows), so steps
-- already planned run as recorded whatever is loaded later; every plan a
-- worker makes (first plan or re-plan) uses the newest version the worker
-- has seen, and goal.planned records it as detail.gdl_version.

CREATE TABLE goalrt.gdl_versions (
    version      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace    text NOT NULL CHECK (workspace <> ''),
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    definitions  jsonb NOT NULL CHECK (jsonb_typeof(definitions) = 'object'),
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    loaded_by    text NOT NULL DEFAULT current_user
);

COMMENT ON TABLE goalrt.gdl_versions IS
    'GDL definitions loaded with `goalrt gdl load`: one row per version, the newest is current.';

CREATE TABLE goalrt.gdl_policies (
    name      text PRIMARY KEY,
    app       text NOT NULL,
    version   bigint NOT NULL REFERENCES goalrt.gdl_versions (version),
    -- The condition as the planner's JSON, wildcards as {_1}, {_2}, ...
    condition jsonb NOT NULL,
    -- The source text, for messages: orders.*.amount > 0
    text      text NOT NULL,
    -- Wildcard variable -> the prefix whose keys it ranges over: {"_1": "orders"}
    wildcards jsonb NOT NULL DEFAULT '{}',
    -- Which changed paths concern the policy: [{"regex": ..., "vars": ["_1"]}]; each
    -- capture group of a regex binds the variable at the same place in vars.
    reads     jsonb NOT NULL
);

COMMENT ON TABLE goalrt.gdl_policies IS
    'The current GDL policies: every change_state checks those its paths concern.';

CREATE TABLE goalrt.gdl_triggers (
    event_type text NOT NULL,
    goal_name  text NOT NULL,
    version    bigint NOT NULL REFERENCES goalrt.gdl_versions (version),
    -- param -> {"field": NAME} (from the event's data) or {"value": CONST}
    params     jsonb NOT NULL,
    PRIMARY KEY (event_type, goal_name)
);

COMMENT ON TABLE goalrt.gdl_triggers IS
    'The current GDL `on event` triggers: an appended event of event_type submits goal_name.';

ALTER TABLE goalrt.goal_types ADD COLUMN defaults jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(defaults) = 'object');

COMMENT ON COLUMN goalrt.goal_types.defaults IS
    'Submit options a goal of this type gets unless its submit gives them (GDL priority and deadline).';

-- The value of a policy term: a path (holes bound by b), a bound variable or
-- a constant. NULL stands for absent: a missing or deleted path, or a value
-- that is not a scalar (the planner reasons about scalars only).
CREATE FUNCTION goalrt.policy_term(t jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p text;
    k text;
    v jsonb;
BEGIN
    IF jsonb_typeof(t) <> 'object' THEN
        RETURN t;
    END IF;
    IF t ? 'var' THEN
        RETURN b -> (t ->> 'var');
    END IF;
    p := t ->> 'path';
    FOR k IN SELECT jsonb_object_keys(b) LOOP
        p := replace(p, '{' || k || '}', b ->> k);
    END LOOP;
    SELECT s.value INTO v FROM goalrt.state_data s WHERE s.path = p;
    IF v IS NULL OR jsonb_typeof(v) IN ('object', 'array') THEN
        RETURN NULL;
    END IF;
    RETURN v;
END
$$;

-- Whether a condition (the planner's JSON) holds on the current state, with
-- the same meaning as goalrt.planner: an absent value equals nothing (so !=
-- holds), ordering holds only between two numbers or two strings.
CREATE FUNCTION goalrt.policy_holds(c jsonb, b jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    op  text := c ->> 'op';
    l   jsonb;
    r   jsonb;
    arg jsonb;
BEGIN
    IF op = 'and' THEN
        FOR arg IN SELECT jsonb_array_elements(c -> 'args') LOOP
            IF NOT goalrt.policy_holds(arg, b) THEN
                RETURN false;
            END IF;
        END LOOP;
        RETURN true;
    ELSIF op = 'or' THEN
        FOR arg IN SELECT jsonb_array_elements(c -> 'args') LOOP
            IF goalrt.policy_holds(arg, b) THEN
                RETURN true;
            END IF;
        END LOOP;
        RETURN false;
    ELSIF op = 'not' THEN
        RETURN NOT goalrt.policy_holds(c -> 'arg', b);
    ELSIF op = 'exists' THEN
        RETURN goalrt.policy_term(jsonb_build_object('path', c ->> 'path'), b) IS NOT NULL;
    ELSIF op = 'in' THEN
        l := goalrt.policy_term(c -> 'left', b);
        FOR arg IN SELECT jsonb_array_elements(c -> 'values') LOOP
            r := goalrt.policy_term(arg, b);
            IF l IS NOT NULL AND r IS NOT NULL AND goalrt.policy_equal(l, r) THEN
                RETURN true;
            END IF;
        END LOOP;
        RETURN false;
    END IF;
    l := goalrt.policy_term(c -> 'left', b);
    r := goalrt.policy_term(c -> 'right', b);
    IF op = '==' THEN
        RETURN l IS NOT NULL AND r IS NOT NULL AND goalrt.policy_equal(l, r);
    ELSIF op = '!=' THEN
        RETURN NOT (l IS NOT NULL AND r IS NOT NULL AND goalrt.policy_equal(l, r));
    END IF;
    IF l IS NULL OR r IS NULL THEN
        RETURN false;
    END IF;
    IF jsonb_typeof(l) = 'number' AND jsonb_typeof(r) = 'number' THEN
        RETURN CASE op WHEN '<' THEN l::numeric < r::numeric WHEN '<=' THEN l::numeric <= r::numeric
                       WHEN '>' THEN l::numeric > r::numeric ELSE l::numeric >= r::numeric END;
    ELSIF jsonb_typeof(l) = 'string' AND jsonb_typeof(r) = 'string' THEN
        -- Code point order, as Python compares strings.
        RETURN CASE op WHEN '<' THEN (l ->> 0) COLLATE "C" < (r ->> 0) COLLATE "C"
                       WHEN '<=' THEN (l ->> 0) COLLATE "C" <= (r ->> 0) COLLATE "C"
                       WHEN '>' THEN (l ->> 0) COLLATE "C" > (r ->> 0) COLLATE "C"
                       ELSE (l ->> 0) COLLATE "C" >= (r ->> 0) COLLATE "C" END;
    END IF;
    RETURN false;
END
$$;

-- JSON equality of two scalars as the planner sees it: true and 1 differ.
CREATE FUNCTION goalrt.policy_equal(l jsonb, r jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(l) = jsonb_typeof(r) AND l = r
$$;

-- The keys under a prefix that hold at least one live path: orders -> o1, o2, ...
CREATE FUNCTION goalrt.policy_keys(prefix text) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT split_part(substr(s.path, length(prefix) + 2), '.', 1)
      FROM goalrt.state_data s
     WHERE s.path >= prefix || '.' AND s.path < prefix || '/' AND s.value IS NOT NULL
$$;

-- Whether anything lives at or under a path: orders.o1 or orders.o1.*.
CREATE FUNCTION goalrt.policy_key_live(p text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM goalrt.state_data s
                    WHERE s.path >= p AND s.path < p || '/' AND s.value IS NOT NULL
                      AND (s.path = p OR s.path >= p || '.'))
$$;

-- Check the policies that the changed paths concern; raise on the first that
-- does not hold. A wildcard is bound to each key a changed path names (or, when
-- a changed path the policy reads names no key of it, to every key); a key is
-- checked only while something still lives under it.
CREATE FUNCTION goalrt.check_policies(paths text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pol   record;
    b     jsonb;
    full_ jsonb;
    var   text;
    todo  jsonb[];
    cur   jsonb;
    key   text;
    done  jsonb[] := '{}';
    where_ text;
BEGIN
    FOR pol IN SELECT * FROM goalrt.gdl_policies ORDER BY name LOOP
        -- The (maybe partial) bindings the changed paths give.
        todo := ARRAY(
            SELECT DISTINCT coalesce(
                       (SELECT jsonb_object_agg(v.var, m.cap[v.i])
                          FROM jsonb_array_elements_text(r -> 'vars') WITH ORDINALITY AS v(var, i)),
                       '{}'::jsonb)
              FROM unnest(paths) AS p(path)
              CROSS JOIN jsonb_array_elements(pol.reads) AS r
              CROSS JOIN LATERAL (SELECT regexp_match(p.path, r ->> 'regex') AS cap) m
             WHERE m.cap IS NOT NULL);
        done := '{}';
        WHILE cardinality(todo) > 0 LOOP
            cur := todo[1];
            todo := todo[2:];
            -- The first wildcard still unbound ranges over every live key under its prefix.
            SELECT w.key INTO var FROM jsonb_each_text(pol.wildcards) w WHERE NOT cur ? w.key ORDER BY w.key LIMIT 1;
            IF FOUND THEN
                todo := todo || ARRAY(SELECT cur || jsonb_build_object(var, k)
                                        FROM goalrt.policy_keys(pol.wildcards ->> var) k);
                CONTINUE;
            END IF;
            IF cur = ANY (done) THEN
                CONTINUE;
            END IF;
            done := done || cur;
            -- Skip a key nothing lives under any more (the whole object was deleted).
            IF EXISTS (SELECT 1 FROM jsonb_each_text(cur) c
                        WHERE NOT goalrt.policy_key_live((pol.wildcards ->> c.key) || '.' || c.value)) THEN
                CONTINUE;
            END IF;
            IF NOT goalrt.policy_holds(pol.condition, cur) THEN
                SELECT string_agg((pol.wildcards ->> c.key) || '.' || c.value, ', ' ORDER BY c.key) INTO where_
                  FROM jsonb_each_text(cur) c;
                RAISE EXCEPTION 'policy_violation: policy % (%) does not hold%', pol.name, pol.text,
                    coalesce(' for ' || where_, '') USING ERRCODE = 'GR003';
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- Submit the goals of the GDL triggers of appended events, in the appending
-- transaction: each event submits each of its goals once (idempotency key
-- event:<id>:<goal>). Params the event's data cannot give (a missing field,
-- a wrong type) do not refuse the append: the event gdl.trigger_refused
-- (stream 'gdl') records the event, the goal and why.
CREATE FUNCTION goalrt.fire_triggers(types text[], ids bigint[]) RETURNS void
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
        EXCEPTION WHEN SQLSTATE 'GR008' THEN
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

-- A goal type's defaults (GDL priority and deadline) apply to every submit
-- that does not give its own.
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

CREATE OR REPLACE FUNCTION goalrt.match_appended(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    k integer;
    m record;
BEGIN
    IF EXISTS (SELECT 1 FROM goalrt.gdl_triggers t WHERE t.event_type = ANY (types)) THEN
        PERFORM goalrt.fire_triggers(types, ids);
    END IF;
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

-- change_state checks the GDL policies its paths concern.
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
    -- GDL policies see the state with the change applied; a broken one aborts it all.
    IF EXISTS (SELECT 1 FROM goalrt.gdl_policies) THEN
        PERFORM goalrt.check_policies(ARRAY(SELECT x ->> 'path' FROM jsonb_array_elements(changes) AS t(x)));
    END IF;
END
$$;

-- Store a workspace's compiled definitions as a new version (nothing new when
-- the content hash equals the current version's) and install what the
-- database runs: the goal types with their params schemas and defaults, the
-- policies, the triggers and the actions' limits (limits the previous version
-- set and this one does not are dropped). One transaction: all or nothing.
--   runtime: {"goal_types": [{"name", "params_schema", "defaults"}],
--             "policies": [{"name", "app", "condition", "text", "wildcards", "reads"}],
--             "triggers": [{"event_type", "goal_name", "params"}],
--             "limits": [{"action", "options"}]}
CREATE FUNCTION goalrt.load_gdl(workspace text, content_hash text, definitions jsonb, runtime jsonb)
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
        UPDATE goalrt.goal_types t SET defaults = coalesce(item -> 'defaults', '{}') WHERE t.name = item ->> 'name';
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

    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('gdl', 'gdl.loaded', jsonb_build_object('version', v, 'workspace', workspace,
                                                      'content_hash', content_hash,
                                                      'previous', cur.version));
    PERFORM pg_notify('goalrt_gdl', v::text);
    RETURN QUERY SELECT v, true;
END
$$;

COMMENT ON FUNCTION goalrt.load_gdl(text, text, jsonb, jsonb) IS
    'Store compiled GDL definitions as a new version (unless unchanged) and install policies, triggers, limits.';

REVOKE ALL ON ALL TABLES IN SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA goalrt FROM PUBLIC;

DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT SELECT ON goalrt.gdl_versions, goalrt.gdl_policies, goalrt.gdl_triggers
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.policy_holds(jsonb, jsonb),
        goalrt.policy_term(jsonb, jsonb),
        goalrt.policy_equal(jsonb, jsonb),
        goalrt.policy_keys(text),
        goalrt.policy_key_live(text)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION goalrt.load_gdl(text, text, jsonb, jsonb) TO goalrt_admin;
END
$$;
