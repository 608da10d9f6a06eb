-- goalrt migration 0004 (down): remove coordination.
--
-- Restores 0003's functions, then drops what 0004 added. Waiting goals keep
-- status 'waiting' with nothing to wake them: cancel them before going down.

CREATE OR REPLACE FUNCTION goalrt.check_goal_transition() RETURNS trigger
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

CREATE OR REPLACE FUNCTION goalrt.params_problem(params_schema jsonb, params jsonb) RETURNS text
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

CREATE OR REPLACE FUNCTION goalrt.cancel_goal(goal_id bigint, reason text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION goalrt.register_worker_v1(
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

CREATE OR REPLACE FUNCTION goalrt.claim_goals_v1(
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

CREATE OR REPLACE FUNCTION goalrt.plan_goals_v1(worker_id text, items jsonb, lease_seconds double precision)
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

CREATE OR REPLACE FUNCTION goalrt.complete_steps_v1(worker_id text, items jsonb, lease_seconds double precision)
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

CREATE OR REPLACE FUNCTION goalrt.fail_goals_v1(worker_id text, items jsonb)
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

CREATE OR REPLACE FUNCTION goalrt.release_goals_v1(worker_id text, goal_ids bigint[], epochs bigint[])
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
    INSERT INTO goalrt.event_data (stream, type, data, metadata)
    VALUES (append_event.stream, append_event.type,
            coalesce(append_event.data, 'null'::jsonb),
            coalesce(append_event.metadata, '{}'::jsonb))
    RETURNING event_data.id INTO new_id;
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.append_events(events jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    bad record;
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

    RETURN QUERY
    INSERT INTO goalrt.event_data (stream, type, data, metadata)
    SELECT x ->> 'stream', x ->> 'type',
           coalesce(x -> 'data', '{}'::jsonb),
           coalesce(nullif(x -> 'metadata', 'null'::jsonb), '{}'::jsonb)
      FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i)
     ORDER BY i
    RETURNING event_data.id;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.change_state(changes jsonb, stream text DEFAULT 'state', metadata jsonb DEFAULT '{}')
RETURNS TABLE (event_id bigint, path text, version bigint, value jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
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

ALTER FUNCTION goalrt.heartbeat_v1(text, bigint[], bigint[], double precision) RESET jit;
DROP VIEW goalrt.waiting_goals;
DROP FUNCTION goalrt.goal_tree(bigint);
DROP FUNCTION goalrt.drop_limit(text, text);
DROP FUNCTION goalrt.set_limit(text, jsonb);
DROP FUNCTION goalrt.resume_goal(bigint, jsonb, text);
DROP FUNCTION goalrt.claim_goals_v2(text, integer, double precision, text[], integer[], integer, double precision);
DROP FUNCTION goalrt.register_worker_v2(text, text, text, integer, integer, text[], text[], integer[], integer);
DROP FUNCTION goalrt.wake_due_v1(integer);
DROP FUNCTION goalrt.match_appended(text[], bigint[]);
DROP FUNCTION goalrt.child_ended(bigint, bigint);
DROP FUNCTION goalrt.finish_wait(bigint, jsonb, boolean, jsonb);
DROP FUNCTION goalrt.advance_goal(bigint, integer, text, double precision, jsonb);
DROP FUNCTION goalrt.end_goal(bigint, text, jsonb, text, jsonb);
DROP FUNCTION goalrt.insert_plan(bigint, jsonb, text, jsonb);
DROP FUNCTION goalrt.next_step(bigint, integer, integer);
DROP FUNCTION goalrt.admit_step(bigint, integer, text, jsonb, bigint);
DROP FUNCTION goalrt.release_limits(bigint);
DROP FUNCTION goalrt.step_problem(jsonb, text);
DROP FUNCTION goalrt.wait_lock_key(text);
DROP FUNCTION goalrt.match_keys(jsonb);
DROP FUNCTION goalrt.partition_of(text, integer);
DROP FUNCTION goalrt.json_problem(jsonb, jsonb, text);
DROP TABLE goalrt.limit_holders;
DROP TABLE goalrt.limit_buckets;
DROP TABLE goalrt.limits;
DROP TABLE goalrt.goal_waits;
DROP INDEX goalrt.event_data_type_idx;
DROP INDEX goalrt.goals_blocked_idx;
DROP INDEX goalrt.goals_deadline_idx;
DROP INDEX goalrt.goals_wake_idx;
DROP INDEX goalrt.goals_runnable_idx;
ALTER TABLE goalrt.workers DROP COLUMN partition_count, DROP COLUMN partitions;
ALTER TABLE goalrt.goal_steps DROP COLUMN label, DROP COLUMN kind;
ALTER TABLE goalrt.goals DROP COLUMN parent_step, DROP COLUMN deadline_at, DROP COLUMN blocked_on, DROP COLUMN wake_at;
CREATE INDEX goals_runnable_idx ON goalrt.goals (priority DESC, run_at, id)
    WHERE status IN ('pending', 'active');
