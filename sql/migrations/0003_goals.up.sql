-- goalrt migration 0003 (up): goals.
--
-- Goal types, goals and their steps, worker registrations, and the
-- functions that submit, claim, lease, plan, complete and cancel goals.
-- sql/schema.sql holds the result; a test checks the two agree.

-------------------------------------------------------------------------------
-- Goals
--
-- A goal is one row of goalrt.goals; its steps (the plan) are rows of
-- goalrt.goal_steps; everything that happens to it is an event in the stream
-- 'goal:<id>'. Lifecycle (enforced by a trigger):
--
--   pending -> active -> (waiting <-> active) -> complete | failed | cancelled
--   pending -> cancelled, waiting -> failed | cancelled
--
-- Workers claim runnable goals with FOR UPDATE SKIP LOCKED in the order
-- (priority DESC, run_at, id), taking a lease: an owner, an expiry and an
-- epoch that every claim increments (the fencing token). A worker's result
-- is applied only while its lease is held: same epoch, not expired, goal
-- still active. Anything else is refused and recorded as
-- step.result_refused. A lease that expires (the worker died or stalled) is
-- taken over by the next claim of any worker: there is no janitor.
--
-- Functions that running workers call carry a version suffix (_v1), so old
-- and new workers can overlap during a deploy.
--
-- enable_seqscan off on the functions that reach goals by id or by the
-- claim index: a worker's connection caches their plans, and a plan made
-- while the tables were analyzed empty scans them whole on every call, so
-- the cost grows with the backlog (found by bench/goals_bench.py: 3x slower).
-------------------------------------------------------------------------------

-- Goal types registered by workers (and by `goalrt submit --handlers`): the
-- JSON Schema of their parameters, checked at submit by goalrt.params_problem.
CREATE TABLE goalrt.goal_types (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$'),
    params_schema jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params_schema) = 'object'),
    registered_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE goalrt.goal_types IS
    'Goal types known to the cluster, with the JSON Schema of their parameters.';

CREATE TABLE goalrt.goals (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'active', 'waiting', 'complete', 'failed', 'cancelled')),
    -- Higher runs first.
    priority         integer     NOT NULL DEFAULT 0,
    -- Not claimed before this time (a delayed submit, a retry's backoff).
    run_at           timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text        UNIQUE CHECK (idempotency_key <> '' AND length(idempotency_key) <= 512),
    parent_id        bigint      REFERENCES goalrt.goals (id),
    partition_key    text,
    -- How many plans the goal has had (0: not planned yet) and the step to
    -- run next (NULL when there is none).
    plan_no          integer     NOT NULL DEFAULT 0,
    step_seq         integer,
    lease_owner      text,
    lease_epoch      bigint      NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    -- How many times the goal was claimed.
    claims           integer     NOT NULL DEFAULT 0,
    result           jsonb,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT goals_lease_whole CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT goals_lease_active CHECK (lease_owner IS NULL OR status = 'active')
);
-- The claim query walks this index in claim order and stops after a batch.
CREATE INDEX goals_runnable_idx ON goalrt.goals (priority DESC, run_at, id)
    WHERE status IN ('pending', 'active');
CREATE INDEX goals_status_idx ON goalrt.goals (status, id);
CREATE INDEX goals_name_idx ON goalrt.goals (name, id);
CREATE INDEX goals_parent_idx ON goalrt.goals (parent_id) WHERE parent_id IS NOT NULL;

COMMENT ON TABLE goalrt.goals IS
    'One row per goal: lifecycle, priority, schedule, lease, plan position, result. History is in the events.';

-- The steps of a goal's plans, in order. A new plan marks the steps left of
-- the old one superseded and appends its own, so seq keeps increasing.
CREATE TABLE goalrt.goal_steps (
    goal_id         bigint      NOT NULL REFERENCES goalrt.goals (id),
    seq             integer     NOT NULL CHECK (seq >= 1),
    plan_no         integer     NOT NULL CHECK (plan_no >= 1),
    action          text        NOT NULL CHECK (action <> '' AND length(action) <= 200),
    args            jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'complete', 'failed', 'superseded', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    result          jsonb,
    error           text,
    -- The lease epoch under which the step completed: lets a worker whose
    -- commit was cut off recognise its own result when it retries.
    completed_epoch bigint,
    started_at      timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (goal_id, seq)
);

COMMENT ON TABLE goalrt.goal_steps IS
    'The steps of each goal''s plans: action, arguments, status, attempts, result or error.';

-- Live worker processes. A worker refreshes last_seen with each heartbeat
-- and removes its row on a clean exit; a killed worker's row stays, with an
-- old last_seen, until another worker registers a day later.
CREATE TABLE goalrt.workers (
    id          text PRIMARY KEY,
    name        text        NOT NULL,
    hostname    text        NOT NULL,
    pid         integer     NOT NULL,
    concurrency integer     NOT NULL,
    goal_types  text[]      NOT NULL DEFAULT '{}',
    actions     text[]      NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE goalrt.workers IS 'Worker processes, with their heartbeat (last_seen).';

-- The lifecycle, enforced for every writer (goalrt's functions and anyone
-- with UPDATE rights alike).
CREATE FUNCTION goalrt.check_goal_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    allowed text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'invalid goal transition: a new goal starts pending, not %', NEW.status
                USING ERRCODE = 'GR007';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    allowed := CASE OLD.status
                 WHEN 'pending' THEN ARRAY['active', 'cancelled']
                 WHEN 'active'  THEN ARRAY['waiting', 'complete', 'failed', 'cancelled']
                 WHEN 'waiting' THEN ARRAY['active', 'failed', 'cancelled']
                 ELSE '{}'::text[]
               END;
    IF NOT NEW.status = ANY (allowed) THEN
        RAISE EXCEPTION 'invalid goal transition for goal %: % -> % (%)', OLD.id, OLD.status, NEW.status,
            CASE WHEN cardinality(allowed) = 0 THEN OLD.status || ' is final'
                 ELSE 'from ' || OLD.status || ' only to ' || array_to_string(allowed, ', ') END
            USING ERRCODE = 'GR007';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER goals_lifecycle
    BEFORE INSERT OR UPDATE OF status ON goalrt.goals
    FOR EACH ROW EXECUTE FUNCTION goalrt.check_goal_transition();

-- Register (or update) a goal type and the JSON Schema of its parameters.
CREATE FUNCTION goalrt.register_goal_type(name text, params_schema jsonb DEFAULT '{}') RETURNS void
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
    INSERT INTO goalrt.goal_types AS t (name, params_schema)
    VALUES (register_goal_type.name, register_goal_type.params_schema)
    ON CONFLICT ON CONSTRAINT goal_types_pkey DO UPDATE
       SET params_schema = excluded.params_schema, registered_at = now()
     WHERE t.params_schema IS DISTINCT FROM excluded.params_schema;
END
$$;

COMMENT ON FUNCTION goalrt.register_goal_type(text, jsonb) IS
    'Register a goal type with the JSON Schema of its parameters (workers do this on start).';

-- The JSON types a (small) JSON Schema allows: from "type" (a name or a
-- list), or from the alternatives of "anyOf"/"oneOf" (how pydantic writes
-- Optional[...]); a "$ref" is an object. NULL means any type.
CREATE FUNCTION goalrt.schema_types(spec jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    alts  jsonb;
    alt   jsonb;
    kinds text[] := '{}';
    more  text[];
BEGIN
    IF jsonb_typeof(spec) IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(spec -> 'type') = 'array' THEN
        RETURN ARRAY(SELECT jsonb_array_elements_text(spec -> 'type'));
    ELSIF jsonb_typeof(spec -> 'type') = 'string' THEN
        RETURN ARRAY[spec ->> 'type'];
    ELSIF spec ? '$ref' THEN
        RETURN ARRAY['object'];
    END IF;
    alts := coalesce(spec -> 'anyOf', spec -> 'oneOf');
    IF jsonb_typeof(alts) IS DISTINCT FROM 'array' THEN
        RETURN NULL;
    END IF;
    FOR alt IN SELECT a FROM jsonb_array_elements(alts) AS t(a) LOOP
        more := goalrt.schema_types(alt);
        IF more IS NULL THEN
            RETURN NULL;
        END IF;
        kinds := kinds || more;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT k FROM unnest(kinds) AS k ORDER BY 1);
END
$$;

-- The first problem of params against a goal type's JSON Schema (required
-- fields, unknown fields when additionalProperties is false, and the JSON
-- type of each field), or NULL when there is none. Workers validate fully
-- (pydantic) when they plan; this catches what psql users get wrong.
CREATE FUNCTION goalrt.params_problem(params_schema jsonb, params jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    field text;
    value jsonb;
    want  text[];
    got   text;
BEGIN
    IF params IS NULL OR jsonb_typeof(params) <> 'object' THEN
        RETURN 'params must be a JSON object';
    END IF;
    FOR field IN
        SELECT r FROM jsonb_array_elements_text(
                        CASE WHEN jsonb_typeof(params_schema -> 'required') = 'array'
                             THEN params_schema -> 'required' ELSE '[]' END) AS r
         ORDER BY 1
    LOOP
        IF NOT params ? field THEN
            RETURN format('params.%s is required', field);
        END IF;
    END LOOP;
    FOR field, value IN SELECT e.key, e.value FROM jsonb_each(params) AS e ORDER BY 1 LOOP
        IF NOT coalesce(params_schema -> 'properties', '{}') ? field THEN
            IF params_schema -> 'additionalProperties' = 'false'::jsonb THEN
                RETURN format('params.%s is not a parameter (expected: %s)', field,
                              coalesce((SELECT string_agg(k, ', ' ORDER BY k)
                                          FROM jsonb_object_keys(params_schema -> 'properties') k), 'none'));
            END IF;
            CONTINUE;
        END IF;
        want := goalrt.schema_types(params_schema -> 'properties' -> field);
        got := jsonb_typeof(value);
        IF want IS NULL OR got = ANY (want)
           OR (got = 'number' AND 'integer' = ANY (want) AND value::numeric = trunc(value::numeric)) THEN
            CONTINUE;
        END IF;
        RETURN format('params.%s must be %s, got %s', field, array_to_string(want, ' or '), got);
    END LOOP;
    RETURN NULL;
END
$$;

-- Submit one goal. options (all optional):
--   priority       integer, higher runs first (default 0)
--   run_at         a time (ISO 8601) before which the goal is not claimed
--   delay          seconds (a number) to wait before it may be claimed
--   key            an idempotency key: submitting again with the same key
--                  returns the goal already submitted (created = false)
--   parent_id      the goal that started this one
--   partition_key  free text that places the goal (used by worker affinity)
-- `label` prefixes error messages (submit_goals passes "goals[i].").
CREATE FUNCTION goalrt.submit_one(name text, params jsonb, options jsonb, label text)
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
     WHERE k NOT IN ('priority', 'run_at', 'delay', 'key', 'parent_id', 'partition_key');
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION '%options.% is not an option (priority, run_at, delay, key, parent_id, partition_key)',
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
    INSERT INTO goalrt.goals AS g (name, params, priority, run_at, idempotency_key, parent_id, partition_key)
    VALUES (submit_one.name, coalesce(params, '{}'), coalesce(prio, 0), start_at, gkey, parent,
            o ->> 'partition_key')
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
                'run_at', start_at, 'key', gkey, 'parent_id', parent, 'partition_key', o ->> 'partition_key')));
    RETURN QUERY SELECT new_id, true;
END
$$;

CREATE FUNCTION goalrt.submit_goal(name text, params jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM goalrt.submit_one(name, params, options, '');
    -- Wake idle workers. Identical payloads coalesce within a transaction;
    -- the notification is a hint, workers also poll.
    IF r.created THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
    RETURN QUERY SELECT r.id, r.created;
END
$$;

COMMENT ON FUNCTION goalrt.submit_goal(text, jsonb, jsonb) IS
    'Submit a goal (options: priority, run_at, delay, key, parent_id, partition_key); returns (id, created).';

-- Submit many goals in one transaction: a JSON array of
-- {"name": ..., "params": {...}, "options": {...}}. All or nothing; an error
-- names the element (goals[3].params.amount ...).
CREATE FUNCTION goalrt.submit_goals(goals jsonb)
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    x   jsonb;
    i   integer := 0;
    r   record;
    any_new boolean := false;
BEGIN
    IF goals IS NULL OR jsonb_typeof(goals) <> 'array' THEN
        RAISE EXCEPTION 'goals must be a JSON array of {"name", "params", "options"} objects' USING ERRCODE = 'GR008';
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(goals) WITH ORDINALITY AS t(e, n) ORDER BY n LOOP
        IF jsonb_typeof(x) <> 'object' OR jsonb_typeof(x -> 'name') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'goals[%] must be an object with a "name"', i USING ERRCODE = 'GR008';
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_object_keys(x) k WHERE k NOT IN ('name', 'params', 'options')) THEN
            RAISE EXCEPTION 'goals[%].% is not a field (name, params, options)', i,
                (SELECT min(k) FROM jsonb_object_keys(x) k WHERE k NOT IN ('name', 'params', 'options'))
                USING ERRCODE = 'GR008';
        END IF;
        SELECT * INTO r FROM goalrt.submit_one(x ->> 'name', x -> 'params', x -> 'options', format('goals[%s]: ', i));
        any_new := any_new OR r.created;
        id := r.id;
        created := r.created;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
    IF any_new THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
END
$$;

COMMENT ON FUNCTION goalrt.submit_goals(jsonb) IS
    'Submit a JSON array of goals atomically; returns (id, created) per element, in order.';

-- Cancel a goal that has not finished. A worker running one of its steps
-- learns it from the goalrt_cancel notification (or its next heartbeat),
-- and its result is refused.
CREATE FUNCTION goalrt.cancel_goal(goal_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    g goalrt.goals;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = cancel_goal.goal_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal % does not exist', coalesce(goal_id::text, 'NULL') USING ERRCODE = 'GR009';
    END IF;
    IF g.status IN ('complete', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'cannot cancel goal %: it is already %', g.id, g.status USING ERRCODE = 'GR007';
    END IF;
    UPDATE goalrt.goal_steps s
       SET status = 'cancelled', finished_at = now()
     WHERE s.goal_id = g.id AND s.status IN ('pending', 'running');
    UPDATE goalrt.goals
       SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, step_seq = NULL,
           last_error = coalesce(reason, 'cancelled'), updated_at = now(), finished_at = now()
     WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.cancelled',
            jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'reason', reason, 'from', g.status,
                                                 'step', g.step_seq, 'worker', g.lease_owner)));
    IF g.lease_owner IS NOT NULL THEN
        PERFORM pg_notify('goalrt_cancel', g.id::text);
    END IF;
    RETURN QUERY SELECT g.id, 'cancelled'::text;
END
$$;

COMMENT ON FUNCTION goalrt.cancel_goal(bigint, text) IS
    'Cancel a pending, active or waiting goal; refused (GR007) for a finished one.';

-- Record a worker process (and clear rows of workers unseen for a day).
CREATE FUNCTION goalrt.register_worker_v1(
    worker_id text, name text, hostname text, pid integer, concurrency integer, goal_types text[], actions text[]
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    DELETE FROM goalrt.workers w WHERE w.last_seen < now() - interval '1 day';
    INSERT INTO goalrt.workers AS w (id, name, hostname, pid, concurrency, goal_types, actions)
    VALUES (worker_id, register_worker_v1.name, register_worker_v1.hostname, register_worker_v1.pid,
            register_worker_v1.concurrency, coalesce(register_worker_v1.goal_types, '{}'),
            coalesce(register_worker_v1.actions, '{}'))
    ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE
       SET name = excluded.name, hostname = excluded.hostname, pid = excluded.pid,
           concurrency = excluded.concurrency, goal_types = excluded.goal_types, actions = excluded.actions,
           started_at = now(), last_seen = now();
END
$$;

CREATE FUNCTION goalrt.deregister_worker_v1(worker_id text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    DELETE FROM goalrt.workers w WHERE w.id = worker_id;
$$;

-- Claim up to max_count runnable goals for a worker, in claim order
-- (priority DESC, run_at, id), skipping rows other claimers hold. A
-- runnable goal is pending or active, due, and not leased (or its lease
-- expired: its worker died or stalled, and this claim takes it over).
-- Each claim increments the lease epoch, counts an attempt of the goal's
-- current step and marks it running. Returns the claimed goals with the
-- step to run (step_seq NULL: the goal has no plan yet).
CREATE FUNCTION goalrt.claim_goals_v1(
    worker_id text, max_count integer, lease_seconds double precision, goal_types text[] DEFAULT NULL
) RETURNS TABLE (
    goal_id bigint, name text, params jsonb, epoch bigint, plan_no integer, step_seq integer,
    action text, args jsonb, attempt integer
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
BEGIN
    IF worker_id IS NULL OR worker_id = '' THEN
        RAISE EXCEPTION 'worker_id must be a non-empty string' USING ERRCODE = 'GR008';
    END IF;
    IF lease_seconds IS NULL OR lease_seconds <= 0 THEN
        RAISE EXCEPTION 'lease_seconds must be > 0' USING ERRCODE = 'GR008';
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT g.id, g.status AS was, g.lease_owner AS prev_owner, g.lease_epoch AS prev_epoch
          FROM goalrt.goals g
         WHERE g.status IN ('pending', 'active')
           AND g.run_at <= now()
           AND (g.lease_expires_at IS NULL OR g.lease_expires_at <= now())
           AND (claim_goals_v1.goal_types IS NULL OR g.name = ANY (claim_goals_v1.goal_types))
         ORDER BY g.priority DESC, g.run_at, g.id
         LIMIT greatest(max_count, 0)
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE goalrt.goals g
           SET status = 'active', lease_owner = worker_id, lease_epoch = g.lease_epoch + 1,
               lease_expires_at = now() + make_interval(secs => lease_seconds),
               claims = g.claims + 1, updated_at = now()
          FROM picked p
         WHERE g.id = p.id
        RETURNING g.id, g.name, g.params, g.lease_epoch, g.plan_no, g.step_seq, g.priority, g.run_at,
                  p.was, p.prev_owner, p.prev_epoch
    ), started AS (
        UPDATE goalrt.goal_steps s
           SET status = 'running', attempts = s.attempts + 1, started_at = now()
          FROM claimed c
         WHERE s.goal_id = c.id AND s.seq = c.step_seq
        RETURNING s.goal_id, s.action, s.args, s.attempts
    ), recorded AS (
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || c.id,
               CASE WHEN c.was = 'pending' THEN 'goal.started' ELSE 'goal.lease_expired' END,
               jsonb_strip_nulls(jsonb_build_object(
                   'goal_id', c.id, 'worker', worker_id, 'epoch', c.lease_epoch,
                   'previous_worker', c.prev_owner, 'previous_epoch',
                   CASE WHEN c.prev_owner IS NOT NULL THEN c.prev_epoch END, 'step', c.step_seq))
          FROM claimed c
         WHERE c.was = 'pending' OR c.prev_owner IS NOT NULL
         ORDER BY c.id
    )
    -- (Data-modifying CTEs run to completion whether or not they are read.)
    SELECT c.id, c.name, c.params, c.lease_epoch, c.plan_no, c.step_seq, s.action, s.args, s.attempts
      FROM claimed c
      LEFT JOIN started s ON s.goal_id = c.id
     ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;

COMMENT ON FUNCTION goalrt.claim_goals_v1(text, integer, double precision, text[]) IS
    'Claim runnable goals in (priority DESC, run_at, id) order with SKIP LOCKED, leasing each with a new epoch.';

-- Whether worker_id holds goal g's lease at epoch `epoch` right now.
CREATE FUNCTION goalrt.holds_lease(g goalrt.goals, worker_id text, epoch bigint) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT g.status = 'active' AND g.lease_owner = worker_id AND g.lease_epoch = epoch
           AND g.lease_expires_at > now()
$$;

-- Why a result under (worker, epoch) is refused for goal g.
CREATE FUNCTION goalrt.lease_lost_reason(g goalrt.goals, worker_id text, epoch bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT CASE
             WHEN g.status <> 'active' THEN 'goal is ' || g.status
             WHEN g.lease_epoch <> epoch THEN format('lease epoch %s was superseded by epoch %s', epoch, g.lease_epoch)
             WHEN g.lease_owner IS DISTINCT FROM worker_id THEN 'lease was released'
             ELSE 'lease expired at ' || g.lease_expires_at
           END
$$;

-- Store the plans a worker computed for goals it holds: a JSON array of
-- {"goal_id", "epoch", "steps": [{"action", "args"}, ...], "replan": bool}.
-- A goal already planned keeps its plan unless replan is true; then the
-- steps left of the earlier plan are superseded. The first step of the new plan starts
-- (attempt 1) at once; an empty plan completes the goal. Returns per goal
-- the outcome: 'planned' (with the step to run), 'complete', or 'refused'
-- (the lease was lost; recorded as an event).
CREATE FUNCTION goalrt.plan_goals_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    x      jsonb;
    g      goalrt.goals;
    ep     bigint;
    first  integer;
    n      integer;
    cur    goalrt.goal_steps;
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, i) ORDER BY (e ->> 'goal_id')::bigint
    LOOP
        IF jsonb_typeof(x -> 'steps') IS DISTINCT FROM 'array' OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(x -> 'steps') s
                WHERE jsonb_typeof(s -> 'action') IS DISTINCT FROM 'string' OR s ->> 'action' = '') THEN
            RAISE EXCEPTION 'plan for goal %: steps must be an array of {"action", "args"}', x ->> 'goal_id'
                USING ERRCODE = 'GR008';
        END IF;
        goal_id := (x ->> 'goal_id')::bigint;
        ep := (x ->> 'epoch')::bigint;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR UPDATE;
        IF g.id IS NULL OR NOT goalrt.holds_lease(g, worker_id, ep) THEN
            IF g.id IS NOT NULL THEN
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES ('goal:' || g.id, 'goal.plan_refused',
                        jsonb_build_object('goal_id', g.id, 'worker', worker_id, 'epoch', ep,
                                           'reason', goalrt.lease_lost_reason(g, worker_id, ep)));
            END IF;
            outcome := 'refused'; step_seq := NULL; action := NULL; args := NULL; attempt := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF g.plan_no > 0 AND NOT coalesce((x ->> 'replan')::boolean, false) THEN
            -- Already planned under this lease: a worker re-sending a plan
            -- whose commit it did not see gets the plan that was stored.
            SELECT * INTO cur FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
            outcome := CASE WHEN g.step_seq IS NULL THEN 'complete' ELSE 'planned' END;
            step_seq := cur.seq; action := cur.action; args := cur.args; attempt := cur.attempts;
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE goalrt.goal_steps st SET status = 'superseded'
         WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
        first := coalesce((SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id), 0) + 1;
        n := jsonb_array_length(x -> 'steps');
        INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, action, args, status, attempts, started_at)
        SELECT g.id, first + i::integer - 1, g.plan_no + 1, s ->> 'action', coalesce(s -> 'args', '{}'),
               CASE WHEN i = 1 THEN 'running' ELSE 'pending' END, CASE WHEN i = 1 THEN 1 ELSE 0 END,
               CASE WHEN i = 1 THEN now() END
          FROM jsonb_array_elements(x -> 'steps') WITH ORDINALITY AS t(s, i);
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.planned',
                jsonb_build_object('goal_id', g.id, 'plan_no', g.plan_no + 1, 'first_seq', first,
                                   'steps', x -> 'steps'));
        IF n = 0 THEN
            UPDATE goalrt.goals
               SET plan_no = g.plan_no + 1, step_seq = NULL, status = 'complete', lease_owner = NULL,
                   lease_expires_at = NULL, updated_at = now(), finished_at = now()
             WHERE goals.id = g.id;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('goal:' || g.id, 'goal.completed', jsonb_build_object('goal_id', g.id, 'result', NULL));
            outcome := 'complete'; step_seq := NULL; action := NULL; args := NULL; attempt := NULL;
        ELSE
            UPDATE goalrt.goals
               SET plan_no = g.plan_no + 1, step_seq = first, updated_at = now(),
                   lease_expires_at = greatest(g.lease_expires_at, now() + make_interval(secs => lease_seconds))
             WHERE goals.id = g.id;
            outcome := 'planned'; step_seq := first; action := x -> 'steps' -> 0 ->> 'action';
            args := coalesce(x -> 'steps' -> 0 -> 'args', '{}'); attempt := 1;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION goalrt.plan_goals_v1(text, jsonb, double precision) IS
    'Store the plans (steps) a worker computed for goals whose leases it holds.';

-- Record the outcome of steps run by a worker, each in its own right and
-- only while the worker still holds the goal's lease at that epoch. items is
-- a JSON array of
--   {"goal_id", "epoch", "seq", "outcome": "complete" | "retry" | "fail",
--    "result", "changes" (a change set for goalrt.change_state), "events"
--    ([{"type", "data"}] appended to the goal's stream), "error",
--    "retry_in" (seconds), "continue" (start the next step at once)}
-- For each item it returns what happened:
--   'continue'        next step started under the same lease (step_seq, action, args, attempt)
--   'complete'        the goal completed
--   'retry'           the goal waits until its retry time, lease released
--   'failed'          the step and the goal failed
--   'released'        the next step is left for any worker (continue was false)
--   'already_applied' this exact result was applied before (a retried commit)
--   'refused'         the lease was lost: nothing applied, step.result_refused recorded
--   'change_refused'  the state change was refused (error says why): nothing applied
CREATE FUNCTION goalrt.complete_steps_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (
    goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer, error text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    x       jsonb;
    g       goalrt.goals;
    s       goalrt.goal_steps;
    ep      bigint;
    sq      integer;
    nxt     goalrt.goal_steps;
    stream  text;
    delay   double precision;
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
        IF x ->> 'outcome' IS NULL OR x ->> 'outcome' NOT IN ('complete', 'retry', 'fail') THEN
            RAISE EXCEPTION 'items: outcome must be complete, retry or fail (goal %)', goal_id USING ERRCODE = 'GR008';
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
            IF x ->> 'outcome' = 'complete' AND s.status = 'complete' AND s.completed_epoch = ep THEN
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
                INSERT INTO goalrt.event_data (stream, type, data, metadata)
                SELECT stream, e ->> 'type', coalesce(e -> 'data', '{}'),
                       jsonb_build_object('goal_id', g.id, 'seq', sq, 'idempotency_key', g.id || ':' || sq)
                  FROM jsonb_array_elements(x -> 'events') WITH ORDINALITY AS t(e, i)
                 ORDER BY i;
            END IF;
            UPDATE goalrt.goal_steps st
               SET status = 'complete', result = x -> 'result', error = NULL, completed_epoch = ep,
                   finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.completed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'epoch', ep, 'worker', worker_id, 'result', x -> 'result'));
            SELECT * INTO nxt FROM goalrt.goal_steps st
             WHERE st.goal_id = g.id AND st.seq > sq AND st.status = 'pending' AND st.plan_no = g.plan_no
             ORDER BY st.seq LIMIT 1;
            IF NOT FOUND THEN
                UPDATE goalrt.goals
                   SET status = 'complete', result = x -> 'result', step_seq = NULL, lease_owner = NULL,
                       lease_expires_at = NULL, last_error = NULL, updated_at = now(), finished_at = now()
                 WHERE goals.id = g.id;
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES (stream, 'goal.completed', jsonb_build_object('goal_id', g.id, 'result', x -> 'result'));
                outcome := 'complete';
            ELSIF coalesce((x ->> 'continue')::boolean, false) THEN
                UPDATE goalrt.goal_steps st SET status = 'running', attempts = st.attempts + 1, started_at = now()
                 WHERE st.goal_id = g.id AND st.seq = nxt.seq;
                UPDATE goalrt.goals
                   SET step_seq = nxt.seq, updated_at = now(),
                       lease_expires_at = greatest(g.lease_expires_at, now() + make_interval(secs => lease_seconds))
                 WHERE goals.id = g.id;
                outcome := 'continue';
                step_seq := nxt.seq; action := nxt.action; args := nxt.args; attempt := nxt.attempts + 1;
            ELSE
                UPDATE goalrt.goals
                   SET step_seq = nxt.seq, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                 WHERE goals.id = g.id;
                outcome := 'released';
                step_seq := nxt.seq;
            END IF;
        ELSIF x ->> 'outcome' = 'retry' THEN
            delay := greatest(coalesce((x ->> 'retry_in')::double precision, 0), 0);
            UPDATE goalrt.goal_steps st SET status = 'pending', error = x ->> 'error'
             WHERE st.goal_id = g.id AND st.seq = sq;
            UPDATE goalrt.goals
               SET run_at = now() + make_interval(secs => delay), lease_owner = NULL, lease_expires_at = NULL,
                   last_error = x ->> 'error', updated_at = now()
             WHERE goals.id = g.id;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'retry_in', delay, 'final', false));
            outcome := 'retry';
        ELSE
            UPDATE goalrt.goal_steps st SET status = 'failed', error = x ->> 'error', finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            UPDATE goalrt.goal_steps st SET status = 'cancelled'
             WHERE st.goal_id = g.id AND st.status = 'pending';
            UPDATE goalrt.goals
               SET status = 'failed', step_seq = NULL, lease_owner = NULL, lease_expires_at = NULL,
                   last_error = x ->> 'error', updated_at = now(), finished_at = now()
             WHERE goals.id = g.id;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'final', true));
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'goal.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'error', x ->> 'error'));
            outcome := 'failed';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION goalrt.complete_steps_v1(text, jsonb, double precision) IS
    'Apply step results (result, state changes, events, advance) only under a held lease; refuse and record others.';

-- Fail goals a worker holds before any step runs (invalid params, a plan
-- that cannot be made): [{"goal_id", "epoch", "error"}]. Returns the goals
-- failed; others (lease lost) are left alone.
CREATE FUNCTION goalrt.fail_goals_v1(worker_id text, items jsonb)
RETURNS TABLE (goal_id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    x jsonb;
    g goalrt.goals;
BEGIN
    FOR x IN SELECT e FROM jsonb_array_elements(coalesce(items, '[]')) AS t(e) ORDER BY (e ->> 'goal_id')::bigint LOOP
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = (x ->> 'goal_id')::bigint FOR UPDATE;
        goal_id := (x ->> 'goal_id')::bigint;
        IF NOT FOUND OR NOT goalrt.holds_lease(g, worker_id, (x ->> 'epoch')::bigint) THEN
            outcome := 'refused';
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE goalrt.goal_steps st SET status = 'cancelled', finished_at = now()
         WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
        UPDATE goalrt.goals
           SET status = 'failed', step_seq = NULL, lease_owner = NULL, lease_expires_at = NULL,
               last_error = x ->> 'error', updated_at = now(), finished_at = now()
         WHERE goals.id = g.id;
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.failed', jsonb_build_object('goal_id', g.id, 'error', x ->> 'error'));
        outcome := 'failed';
        RETURN NEXT;
    END LOOP;
END
$$;

-- Extend the leases a worker still holds and refresh its heartbeat. Returns
-- the ids of the goals whose leases it holds (anything else it must stop).
CREATE FUNCTION goalrt.heartbeat_v1(
    worker_id text, goal_ids bigint[], epochs bigint[], lease_seconds double precision
) RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
BEGIN
    UPDATE goalrt.workers w SET last_seen = now() WHERE w.id = worker_id;
    -- Lock in id order, like every other function that locks many goals,
    -- so a heartbeat and the same worker's completions never deadlock.
    RETURN QUERY
    WITH held AS (
        SELECT g.id
          FROM goalrt.goals g
          JOIN unnest(goal_ids, epochs) AS h(id, epoch) ON g.id = h.id AND g.lease_epoch = h.epoch
         WHERE g.lease_owner = worker_id AND g.status = 'active' AND g.lease_expires_at > now()
         ORDER BY g.id
           FOR UPDATE OF g
    )
    UPDATE goalrt.goals g
       SET lease_expires_at = now() + make_interval(secs => lease_seconds)
      FROM held
     WHERE g.id = held.id
    RETURNING g.id;
END
$$;

-- Give back leases a worker holds but will not finish (it is shutting
-- down): the goals become claimable at once, and the interrupted step's
-- attempt does not count. Returns the goals released.
CREATE FUNCTION goalrt.release_goals_v1(worker_id text, goal_ids bigint[], epochs bigint[])
RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
BEGIN
    RETURN QUERY
    WITH held AS (
        SELECT g.id, g.step_seq
          FROM goalrt.goals g
          JOIN unnest(goal_ids, epochs) AS h(id, epoch) ON g.id = h.id AND g.lease_epoch = h.epoch
         WHERE g.lease_owner = worker_id AND g.status = 'active'
         ORDER BY g.id
           FOR UPDATE OF g
    ), steps AS (
        UPDATE goalrt.goal_steps s SET status = 'pending', attempts = greatest(s.attempts - 1, 0)
          FROM held
         WHERE s.goal_id = held.id AND s.seq = held.step_seq AND s.status = 'running'
        RETURNING s.goal_id
    ), released AS (
        UPDATE goalrt.goals g SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
          FROM held WHERE g.id = held.id
        RETURNING g.id, g.step_seq
    ), recorded AS (
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || r.id, 'goal.released',
               jsonb_strip_nulls(jsonb_build_object('goal_id', r.id, 'worker', worker_id, 'step', r.step_seq))
          FROM released r ORDER BY r.id
    )
    SELECT r.id FROM released r ORDER BY r.id;
    IF FOUND THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA goalrt FROM PUBLIC;

DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    -- Goals: readers see them; writers submit, cancel and run them (workers
    -- are writers).
    GRANT SELECT ON goalrt.goals, goalrt.goal_steps, goalrt.goal_types, goalrt.workers
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.schema_types(jsonb),
        goalrt.params_problem(jsonb, jsonb)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.register_goal_type(text, jsonb),
        goalrt.submit_goal(text, jsonb, jsonb),
        goalrt.submit_goals(jsonb),
        goalrt.cancel_goal(bigint, text),
        goalrt.register_worker_v1(text, text, text, integer, integer, text[], text[]),
        goalrt.deregister_worker_v1(text),
        goalrt.claim_goals_v1(text, integer, double precision, text[]),
        goalrt.plan_goals_v1(text, jsonb, double precision),
        goalrt.complete_steps_v1(text, jsonb, double precision),
        goalrt.fail_goals_v1(text, jsonb),
        goalrt.heartbeat_v1(text, bigint[], bigint[], double precision),
        goalrt.release_goals_v1(text, bigint[], bigint[])
        TO goalrt_writer, goalrt_admin;
END
$$;
