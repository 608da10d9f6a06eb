-- Undo 0006: the functions as they were, and no max_attempts on steps.

CREATE OR REPLACE FUNCTION goalrt.holds_lease(g goalrt.goals, worker_id text, epoch bigint) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT g.status = 'active' AND g.lease_owner = worker_id AND g.lease_epoch = epoch
           AND g.lease_expires_at > now()
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
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal;
    UPDATE goalrt.goal_steps st SET status = 'superseded'
     WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
    first := coalesce((SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id), 0) + 1;
    INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, kind, action, args, label)
    SELECT g.id, first + i::integer - 1, g.plan_no + 1, coalesce(s ->> 'kind', 'action'), s ->> 'action',
           coalesce(s -> 'args', '{}'), s ->> 'label'
      FROM jsonb_array_elements(steps) WITH ORDINALITY AS t(s, i);
    UPDATE goalrt.goals SET plan_no = g.plan_no + 1, step_seq = NULL, updated_at = now() WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.planned',
            jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'plan_no', g.plan_no + 1, 'first_seq', first,
                                                 'steps', steps, 'reason', reason, 'planner', detail)));
    RETURN CASE WHEN jsonb_array_length(steps) > 0 THEN first END;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.claim_goals_v2(
    worker_id text, max_count integer, lease_seconds double precision, goal_types text[] DEFAULT NULL,
    partitions integer[] DEFAULT NULL, partition_count integer DEFAULT NULL,
    takeover_seconds double precision DEFAULT 10
) RETURNS TABLE (
    goal_id bigint, name text, params jsonb, epoch bigint, plan_no integer, step_seq integer,
    action text, args jsonb, attempt integer
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    ids      bigint[];
    served_n integer[];
    served_b integer[];
    cand     record;
BEGIN
    IF worker_id IS NULL OR worker_id = '' THEN
        RAISE EXCEPTION 'worker_id must be a non-empty string' USING ERRCODE = 'GR008';
    END IF;
    IF lease_seconds IS NULL OR lease_seconds <= 0 THEN
        RAISE EXCEPTION 'lease_seconds must be > 0' USING ERRCODE = 'GR008';
    END IF;
    IF (partitions IS NULL) <> (partition_count IS NULL) OR partition_count < 1 THEN
        RAISE EXCEPTION 'give partitions and partition_count together' USING ERRCODE = 'GR008';
    END IF;
    PERFORM goalrt.wake_due_v1(greatest(max_count, 1));
    IF partitions IS NULL THEN
        -- The partitions live workers serve (their goals are left to them).
        SELECT array_agg(w.partition_count ORDER BY w.id, b), array_agg(b ORDER BY w.id, b)
          INTO served_n, served_b
          FROM goalrt.workers w, unnest(w.partitions) AS b
         WHERE w.partition_count IS NOT NULL AND w.id <> worker_id
           AND w.last_seen > now() - make_interval(secs => greatest(lease_seconds, 1));
    END IF;
    SELECT array_agg(p.id) INTO ids FROM (
        SELECT g.id
          FROM goalrt.goals g
         WHERE g.status IN ('pending', 'active')
           AND g.wake_at IS NULL
           AND g.run_at <= now()
           AND (g.lease_expires_at IS NULL OR g.lease_expires_at <= now())
           AND (claim_goals_v2.goal_types IS NULL OR g.name = ANY (claim_goals_v2.goal_types))
           AND (g.partition_key IS NULL
                OR (claim_goals_v2.partitions IS NOT NULL
                    AND goalrt.partition_of(g.partition_key, claim_goals_v2.partition_count)
                        = ANY (claim_goals_v2.partitions))
                OR (claim_goals_v2.partitions IS NULL
                    AND (served_n IS NULL
                         OR g.updated_at <= now() - make_interval(secs => takeover_seconds)
                         OR NOT EXISTS (SELECT 1 FROM unnest(served_n, served_b) AS sv(n, b)
                                         WHERE goalrt.partition_of(g.partition_key, sv.n) = sv.b))))
         ORDER BY g.priority DESC, g.run_at, g.id
         LIMIT greatest(max_count, 0)
           FOR UPDATE SKIP LOCKED
    ) p;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    -- Steps of limited actions start only when admitted.
    FOR cand IN SELECT g.id, g.step_seq, s.action, s.args, g.lease_epoch
               FROM goalrt.goals g
               JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
              WHERE g.id = ANY (ids) AND s.kind = 'action'
                AND EXISTS (SELECT 1 FROM goalrt.limits l WHERE l.action = s.action)
              ORDER BY g.priority DESC, g.run_at, g.id
    LOOP
        IF goalrt.admit_step(cand.id, cand.step_seq, cand.action, cand.args, cand.lease_epoch + 1) IS NOT NULL THEN
            ids := array_remove(ids, cand.id);
        END IF;
    END LOOP;
    RETURN QUERY
    WITH picked AS (
        SELECT g.id, g.status AS was, g.lease_owner AS prev_owner, g.lease_epoch AS prev_epoch
          FROM goalrt.goals g
         WHERE g.id = ANY (ids)
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
                                       'error', x ->> 'error', 'final', true, 'replanned', true));
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
                                       'error', x ->> 'error', 'retry_in', delay, 'final', false));
            outcome := 'retry';
        ELSE
            UPDATE goalrt.goal_steps st SET status = 'failed', error = x ->> 'error', finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'final', true));
            PERFORM goalrt.end_goal(g.id, 'failed', NULL, x ->> 'error', jsonb_build_object('seq', sq));
            outcome := 'failed';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.set_limit(action text, options jsonb)
RETURNS SETOF goalrt.limits
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    o   jsonb := coalesce(options, '{}');
    bad text;
    f   text;
BEGIN
    IF action IS NULL OR action !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$' THEN
        RAISE EXCEPTION 'invalid action name %', coalesce(quote_literal(action), 'NULL') USING ERRCODE = 'GR008';
    END IF;
    IF jsonb_typeof(o) <> 'object' THEN
        RAISE EXCEPTION 'limit options must be a JSON object' USING ERRCODE = 'GR008';
    END IF;
    SELECT min(k) INTO bad FROM jsonb_object_keys(o) k WHERE k NOT IN ('concurrency', 'rate', 'per', 'burst', 'key');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'limit option % is not an option (concurrency, rate, per, burst, key)', bad
            USING ERRCODE = 'GR008';
    END IF;
    FOREACH f IN ARRAY ARRAY['concurrency', 'rate', 'burst'] LOOP
        IF o ? f AND (jsonb_typeof(o -> f) <> 'number' OR (o ->> f) !~ '^[0-9]{1,9}$' OR (o ->> f)::integer < 1) THEN
            RAISE EXCEPTION 'limit option % must be an integer >= 1', f USING ERRCODE = 'GR008';
        END IF;
    END LOOP;
    IF o ? 'per' AND (jsonb_typeof(o -> 'per') <> 'number' OR (o ->> 'per')::numeric <= 0) THEN
        RAISE EXCEPTION 'limit option per must be a number of seconds > 0' USING ERRCODE = 'GR008';
    END IF;
    IF (o ? 'per' OR o ? 'burst') AND NOT o ? 'rate' THEN
        RAISE EXCEPTION 'limit options per and burst need rate' USING ERRCODE = 'GR008';
    END IF;
    IF NOT (o ? 'concurrency' OR o ? 'rate') THEN
        RAISE EXCEPTION 'a limit needs concurrency or rate' USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'key' AND (jsonb_typeof(o -> 'key') <> 'string' OR o ->> 'key' = '') THEN
        RAISE EXCEPTION 'limit option key must be the name of an argument of the action' USING ERRCODE = 'GR008';
    END IF;
    RETURN QUERY
    INSERT INTO goalrt.limits AS l (action, key_arg, max_concurrent, rate, per_seconds, burst)
    VALUES (set_limit.action, coalesce(o ->> 'key', ''), (o ->> 'concurrency')::integer, (o ->> 'rate')::integer,
            CASE WHEN o ? 'rate' THEN coalesce((o ->> 'per')::double precision, 1) END, (o ->> 'burst')::integer)
    ON CONFLICT ON CONSTRAINT limits_pkey DO UPDATE
       SET max_concurrent = excluded.max_concurrent, rate = excluded.rate, per_seconds = excluded.per_seconds,
           burst = excluded.burst, updated_at = now()
    RETURNING l.*;
    -- A changed bucket starts full again, and goals the old limit parked try again.
    DELETE FROM goalrt.limit_buckets b WHERE b.action = set_limit.action AND b.key_arg = coalesce(o ->> 'key', '');
    UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
     WHERE g.blocked_on IS NOT NULL
       AND left(g.blocked_on, length(set_limit.action || '|' || coalesce(o ->> 'key', '') || '|'))
           = set_limit.action || '|' || coalesce(o ->> 'key', '') || '|';
    PERFORM pg_notify('goalrt_goals', '');
END
$$;

ALTER TABLE goalrt.goal_steps DROP COLUMN max_attempts;
