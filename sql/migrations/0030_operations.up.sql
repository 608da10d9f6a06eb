-- Operations (issue 19): a caller's W3C traceparent given at submit is kept with the goal
-- (goals.trace_context, options.traceparent of submit_one) and returned by claim_goals_v3, so the
-- workers' spans continue the caller's trace; a handler's progress (ctx.progress) is kept on its
-- running step (goal_steps.progress*, step_progress_v1, lease-checked).

ALTER TABLE goalrt.goals ADD COLUMN trace_context text;
-- NOT VALID then VALIDATE: the check scans the table without holding its exclusive lock.
ALTER TABLE goalrt.goals ADD CONSTRAINT goals_trace_context_check CHECK (
        trace_context ~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
        AND trace_context !~ '^00-0{32}-' AND trace_context !~ '^00-[0-9a-f]{32}-0{16}-') NOT VALID;
ALTER TABLE goalrt.goals VALIDATE CONSTRAINT goals_trace_context_check;

ALTER TABLE goalrt.goal_steps
    ADD COLUMN progress         double precision CHECK (progress >= 0 AND progress <= 1),
    ADD COLUMN progress_message text             CHECK (length(progress_message) <= 200),
    ADD COLUMN progress_at      timestamptz;

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

CREATE OR REPLACE FUNCTION goalrt.claim_goals_v3(
    worker_id text, max_count integer, lease_seconds double precision, goal_types text[] DEFAULT NULL,
    partitions integer[] DEFAULT NULL, partition_count integer DEFAULT NULL,
    takeover_seconds double precision DEFAULT 10
) RETURNS TABLE (
    goal_id bigint, name text, params jsonb, epoch bigint, plan_no integer, step_seq integer,
    action text, args jsonb, attempt integer, trace_context text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    r record;
BEGIN
    -- Each goal's trace_context is read by a statement of its own, after
    -- claim_goals_v2 has returned: one statement around both would read it
    -- with a snapshot taken before the claim, in which a goal submitted
    -- meanwhile (and claimed by claim_goals_v2's own, later snapshot) does
    -- not exist yet, and its trace would be lost. (A lookup by id per row,
    -- not a join the planner may make by scanning goals whole.)
    FOR r IN SELECT * FROM goalrt.claim_goals_v2(worker_id, max_count, lease_seconds, goal_types, partitions,
                                                  partition_count, takeover_seconds) WITH ORDINALITY AS c
              ORDER BY c.ordinality
    LOOP
        goal_id := r.goal_id; name := r.name; params := r.params; epoch := r.epoch; plan_no := r.plan_no;
        step_seq := r.step_seq; action := r.action; args := r.args; attempt := r.attempt;
        SELECT g.trace_context INTO trace_context FROM goalrt.goals g WHERE g.id = r.goal_id;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.step_progress_v1(
    worker_id text, goal_id bigint, epoch bigint, seq integer, fraction double precision, message text
) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    IF fraction IS NULL OR NOT (fraction >= 0 AND fraction <= 1) THEN
        RAISE EXCEPTION 'progress must be a number from 0 to 1, got %', fraction USING ERRCODE = 'GR008';
    END IF;
    UPDATE goalrt.goal_steps s
       SET progress = fraction, progress_message = left(message, 200), progress_at = now()
      FROM goalrt.goals g
     WHERE g.id = step_progress_v1.goal_id AND goalrt.holds_lease(g, worker_id, epoch)
       AND s.goal_id = g.id AND s.seq = step_progress_v1.seq AND g.step_seq = s.seq AND s.status = 'running';
    RETURN FOUND;
END
$$;

COMMENT ON FUNCTION goalrt.claim_goals_v3(text, integer, double precision, text[], integer[], integer, double precision) IS
    'claim_goals_v2 with each goal''s trace_context (the caller''s W3C traceparent given at submit, or NULL).';

REVOKE ALL ON FUNCTION goalrt.claim_goals_v3(text, integer, double precision, text[], integer[], integer, double precision),
    goalrt.step_progress_v1(text, bigint, bigint, integer, double precision, text) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION
        goalrt.claim_goals_v3(text, integer, double precision, text[], integer[], integer, double precision),
        goalrt.step_progress_v1(text, bigint, bigint, integer, double precision, text)
        TO goalrt_writer, goalrt_admin, goalrt_worker;
END
$$;
