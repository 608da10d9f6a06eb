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
-- Workers claim runnable goals with FOR NO KEY UPDATE SKIP LOCKED in the order
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
-- Those functions also turn JIT off: on PostgreSQL 15 a disabled plan's cost
-- passes jit_above_cost, and compiling it took ~140 ms per call (found by
-- bench/coordination_bench.py).
-------------------------------------------------------------------------------

-- Goal types registered by workers (and by `goalrt submit --handlers`): the
-- JSON Schema of their parameters, checked at submit by goalrt.params_problem.
CREATE TABLE goalrt.goal_types (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$'),
    params_schema jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params_schema) = 'object'),
    registered_at timestamptz NOT NULL DEFAULT now(),
    defaults      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(defaults) = 'object'),
    -- The GDL version that installed the type (NULL: registered by a worker
    -- or by hand). Such a type's schema changes only by loading GDL, or by
    -- an admin (goalrt.caller_is_admin).
    gdl_version   bigint
);

COMMENT ON TABLE goalrt.goal_types IS
    'Goal types known to the cluster, with the JSON Schema of their parameters.';

COMMENT ON COLUMN goalrt.goal_types.defaults IS
    'Submit options a goal of this type gets unless its submit gives them (GDL priority and deadline).';

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
    idempotency_key  text        CHECK (idempotency_key <> '' AND length(idempotency_key) <= 512),
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
    -- When something is due: a delayed start or a retry's backoff (pending or
    -- active goals: not claimable before it), a sleep's end or a wait's
    -- timeout (waiting goals), the next try of a goal parked by a limit.
    wake_at          timestamptz,
    -- The limit that parked the goal: 'action|key_arg|key'.
    blocked_on       text,
    deadline_at      timestamptz,
    -- The parent's step that started this goal (a children wait).
    parent_step      integer,
    -- The database role (session_user) that took the lease: only that role's
    -- sessions can complete, fail, plan, heartbeat or release the goal under
    -- it (holds_lease). Left as it was when the lease ends.
    lease_role       text,
    -- The goal's tenant (docs/security.md, "Tenants"); a child goal's is its parent's.
    tenant           text        NOT NULL DEFAULT '' CHECK (tenant <> '*'),
    -- The caller's W3C traceparent given at submit (options.traceparent):
    -- the worker's spans for the goal continue that trace. NULL: none given.
    trace_context    text,
    -- (Version 00 only, at most 55 characters; an all-zero trace or span id is invalid.)
    CONSTRAINT goals_trace_context_check CHECK (
        trace_context ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
        AND trace_context !~ '^00-0{32}-' AND trace_context !~ '^00-[0-9a-f]{32}-0{16}-'),
    CONSTRAINT goals_lease_whole CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT goals_lease_active CHECK (lease_owner IS NULL OR status = 'active')
)
-- Room on each page for the new version of a row updated without changing
-- an indexed column (a plan, a heartbeat): a HOT update, no index entries.
WITH (fillfactor = 80);
-- The claim query walks this index in claim order and stops after a batch.
-- Runnable goals only: a goal with a wake_at is not due yet, however many
-- there are (10^6 timers do not lengthen the claim's walk).
CREATE INDEX goals_runnable_idx ON goalrt.goals (priority DESC, run_at, id)
    WHERE status IN ('pending', 'active') AND wake_at IS NULL;
CREATE INDEX goals_status_idx ON goalrt.goals (status, id);
CREATE INDEX goals_name_idx ON goalrt.goals (name, id);
CREATE INDEX goals_parent_idx ON goalrt.goals (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX goals_wake_idx ON goalrt.goals (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX goals_deadline_idx ON goalrt.goals (deadline_at)
    WHERE deadline_at IS NOT NULL AND status IN ('pending', 'active', 'waiting');
CREATE INDEX goals_blocked_idx ON goalrt.goals (blocked_on, priority DESC, id) WHERE blocked_on IS NOT NULL;
-- One goal per idempotency key and tenant. Partial: most goals have no key,
-- and every version of a goal row (a claim, an end) would add an entry for
-- its NULL.
CREATE UNIQUE INDEX goals_idempotency_key_idx ON goalrt.goals (idempotency_key, tenant)
    WHERE idempotency_key IS NOT NULL;

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
    kind            text        NOT NULL DEFAULT 'action' CHECK (kind IN ('action', 'event', 'sleep', 'ask', 'children')),
    -- A name the step's result is known by (ctx.results in later steps).
    label           text        CHECK (label <> '' AND length(label) <= 200),
    -- The retry policy's cap on attempts, sent with the plan (NULL: no cap,
    -- as from workers of earlier versions). A claim that takes over this
    -- step while it is running (its worker died) fails the goal once the
    -- interrupted attempts have used them all.
    max_attempts    integer     CHECK (max_attempts >= 1),
    -- Its goal's tenant.
    tenant          text        NOT NULL DEFAULT '' CHECK (tenant <> '*'),
    -- What the handler last told of its progress (ctx.progress, through
    -- step_progress_v1): a fraction of the work done, a message, when.
    progress         double precision CHECK (progress >= 0 AND progress <= 1),
    progress_message text             CHECK (length(progress_message) <= 200),
    progress_at      timestamptz,
    PRIMARY KEY (goal_id, seq)
)
-- A step is updated in place as it runs and ends (HOT: see goalrt.goals).
WITH (fillfactor = 80);

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
    last_seen   timestamptz NOT NULL DEFAULT now(),
    -- The partitions a worker serves: buckets of partition_count (NULL: all).
    partitions      integer[],
    partition_count integer CHECK (partition_count > 0),
    -- The database role (session_user) that registered the worker: only its
    -- sessions may register, heartbeat or deregister this id (NULL: a row
    -- from before goalrt recorded it; the next to register it takes it).
    db_role         text
);

COMMENT ON TABLE goalrt.workers IS 'Worker processes, with their heartbeat (last_seen).';

-- The lifecycle, enforced for every writer (goalrt's functions and anyone
-- with UPDATE rights alike). pending -> failed too: a deadline can pass
-- before any worker took the goal.
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
                 WHEN 'pending' THEN ARRAY['active', 'failed', 'cancelled']
                 WHEN 'active'  THEN ARRAY['waiting', 'complete', 'failed', 'cancelled']
                 WHEN 'waiting' THEN ARRAY['active', 'failed', 'cancelled']
                 -- A failed or cancelled goal goes back to pending only through
                 -- goalrt.retry_goal, which marks its transaction for that goal.
                 WHEN 'failed' THEN CASE WHEN current_setting('goalrt.retrying', true) = OLD.id::text
                                         THEN ARRAY['pending'] ELSE '{}'::text[] END
                 WHEN 'cancelled' THEN CASE WHEN current_setting('goalrt.retrying', true) = OLD.id::text
                                            THEN ARRAY['pending'] ELSE '{}'::text[] END
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

-- The WHEN clauses keep the function out of the common rows (a new goal
-- that is pending, an update that keeps the status): a trigger's WHEN is
-- evaluated without calling it.
CREATE TRIGGER goals_lifecycle
    BEFORE UPDATE OF status ON goalrt.goals
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status) EXECUTE FUNCTION goalrt.check_goal_transition();
CREATE TRIGGER goals_lifecycle_insert
    BEFORE INSERT ON goalrt.goals
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM 'pending') EXECUTE FUNCTION goalrt.check_goal_transition();

-- Whether the login role of this session (session_user, which SECURITY
-- DEFINER does not change) may do what only goalrt_admin may: a member of
-- goalrt_admin, or of the role that owns goalrt's schema (superusers are
-- members of every role).
CREATE FUNCTION goalrt.caller_is_admin() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(pg_has_role(session_user, to_regrole('goalrt_admin'), 'MEMBER'), false)
        OR pg_has_role(session_user, (SELECT n.nspowner FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                       WHERE c.oid = 'goalrt.goal_types'::regclass), 'MEMBER')
$$;

-- Register (or update) a goal type and the JSON Schema of its parameters.
-- A type GDL installed keeps its schema unless the caller is an admin.
CREATE FUNCTION goalrt.register_goal_type(name text, params_schema jsonb DEFAULT '{}') RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    installed bigint;
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
    SELECT t.gdl_version INTO installed FROM goalrt.goal_types t
     WHERE t.name = register_goal_type.name AND t.params_schema IS DISTINCT FROM register_goal_type.params_schema;
    IF installed IS NOT NULL AND NOT goalrt.caller_is_admin() THEN
        RAISE EXCEPTION 'goal type % was installed by GDL version %: only loading GDL (goalrt_admin) changes its params schema',
            name, installed USING ERRCODE = '42501';
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

-- The first problem of a JSON value against a (small) JSON Schema, naming
-- the field as `label.field`, or NULL. params_problem is this for params.
CREATE FUNCTION goalrt.json_problem(spec jsonb, value jsonb, label text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    field text;
    item  jsonb;
    want  text[];
    got   text;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) <> 'object' THEN
        RETURN label || ' must be a JSON object';
    END IF;
    FOR field IN
        SELECT r FROM jsonb_array_elements_text(
                        CASE WHEN jsonb_typeof(spec -> 'required') = 'array' THEN spec -> 'required' ELSE '[]' END) AS r
         ORDER BY 1
    LOOP
        IF NOT value ? field THEN
            RETURN format('%s.%s is required', label, field);
        END IF;
    END LOOP;
    FOR field, item IN SELECT e.key, e.value FROM jsonb_each(value) AS e ORDER BY 1 LOOP
        IF NOT coalesce(spec -> 'properties', '{}') ? field THEN
            IF spec -> 'additionalProperties' = 'false'::jsonb THEN
                RETURN format('%s.%s is not a field (expected: %s)', label, field,
                              coalesce((SELECT string_agg(k, ', ' ORDER BY k)
                                          FROM jsonb_object_keys(spec -> 'properties') k), 'none'));
            END IF;
            CONTINUE;
        END IF;
        want := goalrt.schema_types(spec -> 'properties' -> field);
        got := jsonb_typeof(item);
        IF want IS NULL OR got = ANY (want)
           OR (got = 'number' AND 'integer' = ANY (want) AND item::numeric = trunc(item::numeric)) THEN
            CONTINUE;
        END IF;
        RETURN format('%s.%s must be %s, got %s', label, field, array_to_string(want, ' or '), got);
    END LOOP;
    RETURN NULL;
END
$$;

-- The first problem of params against a goal type's JSON Schema (required
-- fields, unknown fields when additionalProperties is false, and the JSON
-- type of each field), or NULL when there is none. Workers validate fully
-- (pydantic) when they plan; this catches what psql users get wrong.
-- (A schema with no required fields, no properties and no
-- additionalProperties, e.g. {}, takes any object: json_problem is not
-- called for it.)
CREATE FUNCTION goalrt.params_problem(params_schema jsonb, params jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(params) = 'object' AND jsonb_typeof(params_schema) = 'object'
                     AND NOT params_schema ?| ARRAY['required', 'properties', 'additionalProperties']
                THEN NULL
                ELSE replace(goalrt.json_problem(params_schema, params, 'params'), 'is not a field',
                             'is not a parameter')
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
--   deadline       a time (ISO 8601) or seconds from now after which the
--                  goal fails with deadline_exceeded
--   traceparent    a W3C traceparent (version 00): the workers' spans for
--                  the goal continue that trace (goals.trace_context)
-- A goal type's defaults (GDL priority and deadline) apply to every submit
-- that does not give its own.
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
     WHERE k NOT IN ('priority', 'run_at', 'delay', 'key', 'parent_id', 'partition_key', 'deadline', 'traceparent');
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION '%options.% is not an option (priority, run_at, delay, key, parent_id, partition_key, deadline, traceparent)',
            label, bad_key USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'traceparent' AND jsonb_typeof(o -> 'traceparent') <> 'null'
       AND (jsonb_typeof(o -> 'traceparent') <> 'string'
            OR (o ->> 'traceparent') !~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
            OR (o ->> 'traceparent') ~ '^00-0{32}-' OR (o ->> 'traceparent') ~ '^00-[0-9a-f]{32}-0{16}-') THEN
        RAISE EXCEPTION '%options.traceparent must be a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, lower case, ids not all zero)',
            label USING ERRCODE = 'GR008';
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
                                   wake_at, deadline_at, trace_context)
    VALUES (submit_one.name, coalesce(params, '{}'), coalesce(prio, 0), start_at, gkey, parent,
            o ->> 'partition_key', CASE WHEN start_at > now() THEN start_at END, deadline, o ->> 'traceparent')
    ON CONFLICT (idempotency_key, tenant) WHERE idempotency_key IS NOT NULL DO NOTHING
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
    ids bigint[];
BEGIN
    IF goals IS NULL OR jsonb_typeof(goals) <> 'array' THEN
        RAISE EXCEPTION 'goals must be a JSON array of {"name", "params", "options"} objects' USING ERRCODE = 'GR008';
    END IF;
    -- The common case, for the whole batch at once: every goal of a
    -- registered type with no defaults, valid params and no options. What
    -- the loop below would do for it, in a few statements (the ids drawn
    -- in the batch's order first). Any other batch, and any batch with a
    -- problem (which the loop then names), goes through the loop.
    IF jsonb_array_length(goals) > 0 AND NOT EXISTS (
        SELECT 1
          FROM jsonb_array_elements(goals) AS t(e)
          LEFT JOIN goalrt.goal_types gt ON gt.name = e ->> 'name'
         -- (a CASE, so that each test runs only on what passed the ones before)
         WHERE NOT CASE
                   WHEN jsonb_typeof(e) <> 'object' OR jsonb_typeof(e -> 'name') IS DISTINCT FROM 'string' THEN false
                   WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(e) k WHERE k NOT IN ('name', 'params', 'options'))
                       THEN false
                   WHEN e ? 'options' AND e -> 'options' <> '{}' THEN false
                   WHEN e ? 'params' AND jsonb_typeof(e -> 'params') <> 'object' THEN false
                   WHEN gt.name IS NULL OR gt.defaults <> '{}' THEN false
                   WHEN goalrt.json_too_deep(e -> 'params') THEN false
                   ELSE goalrt.params_problem(gt.params_schema, coalesce(e -> 'params', '{}')) IS NULL
               END) THEN
        ids := ARRAY(SELECT nextval(pg_get_serial_sequence('goalrt.goals', 'id'))
                       FROM generate_series(1, jsonb_array_length(goals)));
        INSERT INTO goalrt.goals (id, name, params)
        OVERRIDING SYSTEM VALUE
        SELECT ids[t.n::integer], t.e ->> 'name', coalesce(t.e -> 'params', '{}')
          FROM jsonb_array_elements(goals) WITH ORDINALITY AS t(e, n)
         ORDER BY t.n;
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || g.id, 'goal.submitted',
               jsonb_strip_nulls(jsonb_build_object(
                   'goal_id', g.id, 'name', g.name, 'params', g.params, 'priority', g.priority, 'run_at', g.run_at))
          FROM goalrt.goals g
         WHERE g.id = ANY (ids)
         ORDER BY g.id;
        PERFORM pg_notify('goalrt_goals', '');
        RETURN QUERY SELECT u.id, true FROM unnest(ids) WITH ORDINALITY AS u(id, n) ORDER BY u.n;
        RETURN;
    END IF;
    -- Two batches inserting the same new idempotency keys in opposite orders
    -- would each wait for the other's insert (the unique index). A batch of
    -- several keys first takes a lock per key, in one order (lock order, see
    -- 35_workers.sql), so one of the two waits before it inserts anything.
    PERFORM pg_advisory_xact_lock('goalrt.goals_idempotency_key_idx'::regclass::oid::integer, k.h)
       FROM (SELECT DISTINCT hashtext(e -> 'options' ->> 'key') AS h
               FROM jsonb_array_elements(goals) AS t(e)
              WHERE jsonb_typeof(e -> 'options' -> 'key') = 'string'
              ORDER BY 1) k
      WHERE (SELECT count(DISTINCT e -> 'options' ->> 'key')
               FROM jsonb_array_elements(goals) AS t(e)
              WHERE jsonb_typeof(e -> 'options' -> 'key') = 'string') > 1;
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

-- Cancel a goal that has not finished, and its unfinished child goals. No
-- step of theirs starts once this has committed (end_goal takes their
-- start locks); a worker running one of their steps learns it from the
-- goalrt_cancel notification (or its next heartbeat), and its result is
-- refused. Takes its locks in the lock order (35_workers.sql): the goal
-- and its subtree in id order, then the buckets of their slots; so it
-- never deadlocks with the workers.
CREATE FUNCTION goalrt.cancel_goal(goal_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    g goalrt.goals;
BEGIN
    PERFORM goalrt.lock_limits(goalrt.lock_goals(ARRAY[cancel_goal.goal_id]), NULL);
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = cancel_goal.goal_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal % does not exist', coalesce(goal_id::text, 'NULL') USING ERRCODE = 'GR009';
    END IF;
    IF g.status IN ('complete', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'cannot cancel goal %: it is already %', g.id, g.status USING ERRCODE = 'GR007';
    END IF;
    PERFORM goalrt.end_goal(g.id, 'cancelled', NULL, coalesce(reason, 'cancelled'),
                            jsonb_strip_nulls(jsonb_build_object('reason', reason, 'from', g.status,
                                                                 'step', g.step_seq, 'worker', g.lease_owner)));
    RETURN QUERY SELECT g.id, 'cancelled'::text;
END
$$;

COMMENT ON FUNCTION goalrt.cancel_goal(bigint, text) IS
    'Cancel a pending, active or waiting goal; refused (GR007) for a finished one.';

-- Run a failed or cancelled goal again (goalrt retry): its steps from
-- from_step on (default: the first step of its last plan that did not
-- complete) become a new plan, copied with their arguments and attempts set
-- to 0, and the goal is pending again with no result or error; a goal never
-- planned is planned anew by the worker that claims it. Recorded as
-- goal.retried. A deadline that has passed is dropped. A goal with a parent
-- is refused (retry the parent from its children step instead): its parent
-- has gone on without it.
CREATE FUNCTION goalrt.retry_goal(goal_id bigint, from_step integer DEFAULT NULL, reason text DEFAULT NULL)
RETURNS TABLE (id bigint, status text, first_step integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    g      goalrt.goals;
    origin goalrt.goal_steps;
    first  integer;
    copied integer;
BEGIN
    PERFORM goalrt.lock_goals(ARRAY[retry_goal.goal_id]);
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = retry_goal.goal_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal % does not exist', coalesce(goal_id::text, 'NULL') USING ERRCODE = 'GR009';
    END IF;
    IF g.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'cannot retry goal %: it is %, and only a failed or cancelled goal runs again', g.id, g.status
            USING ERRCODE = 'GR007';
    END IF;
    IF g.parent_id IS NOT NULL THEN
        RAISE EXCEPTION 'cannot retry goal %: it is a child of goal %, which has gone on without it; retry goal % from its step %',
            g.id, g.parent_id, g.parent_id, coalesce(g.parent_step::text, '?') USING ERRCODE = 'GR007';
    END IF;
    IF reason IS NOT NULL AND length(reason) > 1000 THEN
        RAISE EXCEPTION 'reason must be at most 1000 characters' USING ERRCODE = 'GR008';
    END IF;
    IF from_step IS NOT NULL THEN
        SELECT * INTO origin FROM goalrt.goal_steps s WHERE s.goal_id = g.id AND s.seq = from_step;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'goal % has no step %: its steps are %', g.id, from_step,
                coalesce((SELECT min(s.seq) || '..' || max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id),
                         'none (it was never planned)') USING ERRCODE = 'GR008';
        END IF;
    ELSIF g.plan_no > 0 THEN
        SELECT * INTO origin FROM goalrt.goal_steps s
         WHERE s.goal_id = g.id AND s.plan_no = g.plan_no AND s.status <> 'complete'
         ORDER BY s.seq LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'cannot retry goal %: every step of its plan completed; give the step to run again from',
                g.id USING ERRCODE = 'GR008';
        END IF;
    END IF;
    PERFORM set_config('goalrt.retrying', g.id::text, true);
    IF origin.seq IS NOT NULL THEN
        first := (SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id) + 1;
        INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, kind, action, args, label, max_attempts)
        SELECT g.id, first + (s.seq - origin.seq), g.plan_no + 1, s.kind, s.action, s.args, s.label, s.max_attempts
          FROM goalrt.goal_steps s
         WHERE s.goal_id = g.id AND s.plan_no = origin.plan_no AND s.seq >= origin.seq
         ORDER BY s.seq;
        GET DIAGNOSTICS copied = ROW_COUNT;
    END IF;
    UPDATE goalrt.goals
       SET status = 'pending', result = NULL, last_error = NULL, finished_at = NULL, run_at = now(), wake_at = NULL,
           blocked_on = NULL, step_seq = first, plan_no = g.plan_no + CASE WHEN first IS NULL THEN 0 ELSE 1 END,
           -- A deadline that has passed would fail it again at once.
           deadline_at = CASE WHEN g.deadline_at > now() THEN g.deadline_at END,
           updated_at = now()
     WHERE goals.id = g.id;
    PERFORM set_config('goalrt.retrying', '', true);
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.retried',
            jsonb_strip_nulls(jsonb_build_object(
                'goal_id', g.id, 'from', g.status, 'error', g.last_error, 'reason', reason,
                'from_step', origin.seq, 'first_seq', first, 'steps', copied,
                'plan_no', CASE WHEN first IS NOT NULL THEN g.plan_no + 1 END)));
    PERFORM pg_notify('goalrt_goals', '');
    RETURN QUERY SELECT g.id, 'pending'::text, first;
END
$$;

COMMENT ON FUNCTION goalrt.retry_goal(bigint, integer, text) IS
    'Run a failed or cancelled goal again from a step (default: its first step that did not complete).';
