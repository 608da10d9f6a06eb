-------------------------------------------------------------------------------
-- GDL definitions in the database
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
--   gdl_events     the current version's `event` declarations: an appended
--                  event of a declared type whose data does not match is
--                  refused (GR002)
--   goal_types.defaults   a GDL goal's priority and deadline, applied at
--                  submit unless the submit gives its own (the column is
--                  defined with its table in 30_goals.sql)
--
-- Which version a goal runs: every plan a worker makes (first plan or
-- re-plan) uses the newest version the worker has seen, and goal.planned
-- records it as detail.gdl_version. A goal declared by a condition whose
-- plan is of an older version is re-planned by the worker before its next
-- step (reason 'definitions'; see docs/gdl.md).
-------------------------------------------------------------------------------

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

-- The current version's `event` declarations: the JSON Schema each type's
-- data must match (every declared field, of its type, and no other).
-- Appends of a declared type are checked by the trigger below; undeclared
-- types stay free.
CREATE TABLE goalrt.gdl_events (
    type    text PRIMARY KEY,
    version bigint NOT NULL REFERENCES goalrt.gdl_versions (version),
    schema  jsonb NOT NULL CHECK (jsonb_typeof(schema) = 'object')
);

COMMENT ON TABLE goalrt.gdl_events IS
    'The current GDL event declarations: an appended event of a declared type must match its schema.';

-- Refuse an INSERT into the log whose events of a declared type do not
-- match their declaration (SQLSTATE GR002, naming the event type and the
-- field): every way an event is appended (append_event, append_events, a
-- handler's events in complete_steps_v1, a direct INSERT) goes through it.
-- One call per statement, by the trigger event_data_declared (AFTER INSERT
-- ... FOR EACH STATEMENT, new rows as new_rows), which load_gdl creates
-- while declarations exist and drops when none do, so a database without
-- them pays nothing.
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

-- The (maybe partial) bindings of a policy's wildcards that changed
-- `paths` give, by the policy's `reads` ([{"regex", "vars"}], see
-- gdl_policies): each capture group of a matching regex binds the variable
-- at the same place in vars ({} when a path matches with no variable).
CREATE FUNCTION goalrt.policy_bindings(reads jsonb, paths text[]) RETURNS jsonb[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(
        SELECT DISTINCT coalesce(
                   (SELECT pg_catalog.jsonb_object_agg(v.var, m.cap[v.i])
                      FROM pg_catalog.jsonb_array_elements_text(r -> 'vars') WITH ORDINALITY AS v(var, i)),
                   '{}'::jsonb)
          FROM pg_catalog.unnest(paths) AS p(path)
          CROSS JOIN pg_catalog.jsonb_array_elements(reads) AS r
          CROSS JOIN LATERAL (SELECT pg_catalog.regexp_match(p.path, r ->> 'regex') AS cap) m
         WHERE m.cap IS NOT NULL)
$$;

-- Lock the GDL policy instances that changed `paths` concern, until the
-- transaction ends (check_policies; complete_steps_v1 for all its items at
-- once, before any of them is applied: step 5 of the lock order).
--
-- Write skew: two transactions changing different paths that one policy
-- reads (stock.reserved, stock.total) would each check it against the
-- other's old value and could both commit. So before anything is checked,
-- each policy instance to check is locked until the transaction ends, in
-- one order (policy name, then the lock key of the binding): the instance
-- (policy, binding) exclusively and the policy shared when every wildcard
-- is bound by the changed paths, else (a check over every key) the policy
-- exclusively. The check then reads, with a statement snapshot taken after
-- the locks, what a concurrent writer of the same instance committed: the
-- second of two such writers waits for the first and sees its change.
-- Under REPEATABLE READ a transaction's snapshot is older than the locks,
-- so every state row the policy's reads match is also locked FOR SHARE,
-- which raises a serialization failure (40001) when a concurrent
-- transaction changed one after the snapshot (a path created meanwhile is
-- not seen). SERIALIZABLE needs nothing more: PostgreSQL refuses the skew.
CREATE FUNCTION goalrt.lock_policies(paths text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pol   record;
    todo  jsonb[];
    whole boolean;
BEGIN
    FOR pol IN SELECT * FROM goalrt.gdl_policies ORDER BY name LOOP
        todo := goalrt.policy_bindings(pol.reads, paths);
        CONTINUE WHEN cardinality(todo) = 0;
        whole := EXISTS (SELECT 1 FROM unnest(todo) AS b(b), jsonb_object_keys(pol.wildcards) w WHERE NOT b.b ? w);
        IF whole THEN
            PERFORM pg_advisory_xact_lock('goalrt.gdl_policies'::regclass::oid::integer, hashtext(pol.name));
        ELSE
            PERFORM pg_advisory_xact_lock_shared('goalrt.gdl_policies'::regclass::oid::integer, hashtext(pol.name));
            PERFORM pg_advisory_xact_lock('goalrt.gdl_policies_pkey'::regclass::oid::integer, k.k)
               FROM (SELECT DISTINCT hashtext(pol.name || ' ' || b.b::text) AS k FROM unnest(todo) AS b(b) ORDER BY 1) k;
        END IF;
        IF current_setting('transaction_isolation') = 'repeatable read' THEN
            -- (every row any of its reads matches, whatever the binding: more than the check reads)
            PERFORM 1 FROM goalrt.state_data s
             WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(pol.reads) r WHERE s.path ~ (r ->> 'regex'))
             ORDER BY s.path COLLATE "C"
               FOR SHARE OF s;
        END IF;
    END LOOP;
END
$$;

-- Check the policies that the changed paths concern; raise on the first that
-- does not hold. A wildcard is bound to each key a changed path names (or, when
-- a changed path the policy reads names no key of it, to every key); a key is
-- checked only while something still lives under it.
-- The instances are locked first (lock_policies), so the check sees what a
-- concurrent writer of the same instance committed.
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
    PERFORM goalrt.lock_policies(paths);
    FOR pol IN SELECT * FROM goalrt.gdl_policies ORDER BY name LOOP
        -- The (maybe partial) bindings the changed paths give.
        todo := goalrt.policy_bindings(pol.reads, paths);
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

-- Store a workspace's compiled definitions as a new version (nothing new when
-- the content hash equals the current version's) and install what the
-- database runs: the goal types with their params schemas and defaults, the
-- policies, the triggers, the actions' limits (limits the previous version
-- set and this one does not are dropped) and the schedules (45_schedules.sql). One transaction: all or nothing.
--   runtime: {"goal_types": [{"name", "params_schema", "defaults"}],
--             "events": [{"type", "schema"}],
--             "policies": [{"name", "app", "condition", "text", "wildcards", "reads"}],
--             "triggers": [{"event_type", "goal_name", "params"}],
--             "limits": [{"action", "options"}],
--             "schedules": [{"name", "goal_name", "params", "options"}]}
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

COMMENT ON FUNCTION goalrt.load_gdl(text, text, jsonb, jsonb) IS
    'Store compiled GDL definitions as a new version (unless unchanged) and install policies, triggers, limits.';
