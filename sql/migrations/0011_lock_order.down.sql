-- Back to 0008's locking: the functions as they were, without the lock helpers and start locks.

CREATE OR REPLACE FUNCTION goalrt.cancel_goal(goal_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
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
    PERFORM goalrt.end_goal(g.id, 'cancelled', NULL, coalesce(reason, 'cancelled'),
                            jsonb_strip_nulls(jsonb_build_object('reason', reason, 'from', g.status,
                                                                 'step', g.step_seq, 'worker', g.lease_owner)));
    RETURN QUERY SELECT g.id, 'cancelled'::text;
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
    died     bigint;
    reason   text;
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
    -- Interrupted steps that have used their attempts fail (before any
    -- limit admits them): a step that kills its worker does not loop.
    FOR cand IN SELECT g.id, g.lease_owner, g.lease_epoch, s.seq, s.action, s.attempts, s.max_attempts
               FROM goalrt.goals g
               JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
              WHERE g.id = ANY (ids) AND s.status = 'running' AND g.lease_owner IS NOT NULL
                AND s.attempts >= s.max_attempts
              ORDER BY g.id
    LOOP
        -- This takeover and the earlier ones of the same step (goal.lease_expired).
        SELECT 1 + count(*) INTO died FROM goalrt.event_data e
         WHERE e.stream = 'goal:' || cand.id AND e.type = 'goal.lease_expired'
           AND e.data -> 'step' = to_jsonb(cand.seq);
        reason := format('step %s (%s): the worker died running it %s time%s (max_attempts %s)', cand.seq,
                         cand.action, died, CASE WHEN died = 1 THEN '' ELSE 's' END, cand.max_attempts);
        UPDATE goalrt.goal_steps st SET status = 'failed', error = reason, finished_at = now()
         WHERE st.goal_id = cand.id AND st.seq = cand.seq;
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || cand.id, 'step.failed',
                jsonb_build_object('goal_id', cand.id, 'seq', cand.seq, 'action', cand.action,
                                   'attempt', cand.attempts, 'error', reason, 'final', true, 'interrupted', true,
                                   'worker', worker_id, 'previous_worker', cand.lease_owner,
                                   'previous_epoch', cand.lease_epoch));
        PERFORM goalrt.end_goal(cand.id, 'failed', NULL, reason, jsonb_build_object('seq', cand.seq));
        ids := array_remove(ids, cand.id);
    END LOOP;
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

CREATE OR REPLACE FUNCTION goalrt.plan_goals_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    x       jsonb;
    g       goalrt.goals;
    ep      bigint;
    first   integer;
    cur     goalrt.goal_steps;
    problem text;
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, i) ORDER BY (e ->> 'goal_id')::bigint
    LOOP
        IF jsonb_typeof(x -> 'steps') IS DISTINCT FROM 'array' THEN
            RAISE EXCEPTION 'plan for goal %: steps must be an array of {"action", "args"}', x ->> 'goal_id'
                USING ERRCODE = 'GR008';
        END IF;
        SELECT p INTO problem FROM (
            SELECT goalrt.step_problem(s, format('plan for goal %s: steps[%s]', x ->> 'goal_id', i - 1)) AS p
              FROM jsonb_array_elements(x -> 'steps') WITH ORDINALITY AS t(s, i) ORDER BY i) q
         WHERE p IS NOT NULL LIMIT 1;
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION '%', problem USING ERRCODE = 'GR008';
        END IF;
        goal_id := (x ->> 'goal_id')::bigint;
        ep := (x ->> 'epoch')::bigint;
        outcome := NULL; step_seq := NULL; action := NULL; args := NULL; attempt := NULL;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR UPDATE;
        IF g.id IS NULL OR NOT goalrt.holds_lease(g, worker_id, ep) THEN
            IF g.id IS NOT NULL THEN
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES ('goal:' || g.id, 'goal.plan_refused',
                        jsonb_build_object('goal_id', g.id, 'worker', worker_id, 'epoch', ep,
                                           'reason', goalrt.lease_lost_reason(g, worker_id, ep)));
            END IF;
            outcome := 'refused';
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
        PERFORM goalrt.release_limits(g.id);
        first := goalrt.insert_plan(g.id, x -> 'steps',
                                    coalesce(x ->> 'reason', CASE WHEN g.plan_no > 0 THEN 'replan' END),
                                    CASE WHEN jsonb_typeof(x -> 'detail') = 'object' THEN x -> 'detail' END);
        outcome := goalrt.advance_goal(g.id, first, worker_id, lease_seconds, NULL);
        IF outcome = 'continue' THEN
            SELECT st.* INTO cur FROM goalrt.goal_steps st JOIN goalrt.goals gg ON gg.id = st.goal_id
             WHERE st.goal_id = g.id AND st.seq = gg.step_seq;
            outcome := 'planned'; step_seq := cur.seq; action := cur.action; args := cur.args;
            attempt := cur.attempts;
        END IF;
        RETURN NEXT;
    END LOOP;
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

CREATE OR REPLACE FUNCTION goalrt.fail_goals_v1(worker_id text, items jsonb)
RETURNS TABLE (goal_id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
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
        PERFORM goalrt.end_goal(g.id, 'failed', NULL, x ->> 'error', NULL);
        outcome := 'failed';
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.heartbeat_v1(
    worker_id text, goal_ids bigint[], epochs bigint[], lease_seconds double precision
) RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
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

CREATE OR REPLACE FUNCTION goalrt.release_goals_v1(worker_id text, goal_ids bigint[], epochs bigint[])
RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    released bigint[];
BEGIN
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
    ), done AS (
        UPDATE goalrt.goals g SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
          FROM held WHERE g.id = held.id
        RETURNING g.id, g.step_seq
    ), recorded AS (
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || r.id, 'goal.released',
               jsonb_strip_nulls(jsonb_build_object('goal_id', r.id, 'worker', worker_id, 'step', r.step_seq))
          FROM done r ORDER BY r.id
    )
    SELECT array_agg(r.id ORDER BY r.id) INTO released FROM done r;
    IF released IS NOT NULL THEN
        PERFORM goalrt.release_limits(r) FROM unnest(released) AS r;
        PERFORM pg_notify('goalrt_goals', '');
        RETURN QUERY SELECT r FROM unnest(released) AS r;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.wait_look_back(p_type text, alts jsonb, p_since bigint, OUT hit jsonb, OUT settled boolean)
LANGUAGE plpgsql AS $$
DECLARE
    snap      pg_snapshot;
    since_pos bigint;
    ev        record;
BEGIN
    settled := pg_try_advisory_xact_lock('goalrt.goal_waits'::regclass::oid::integer, goalrt.wait_lock_key(p_type));
    -- Appended after the since point.
    SELECT e.id, e.stream, e.type, e.data INTO ev FROM goalrt.event_data e
     WHERE e.type = p_type AND e.id > p_since
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
     ORDER BY e.id LIMIT 1;
    IF NOT FOUND AND p_since > 0 THEN
        -- Appended before it but ordered after it. The clock is read first:
        -- an event positioned after that read is still taken for unpositioned.
        SELECT c.snapshot INTO snap FROM goalrt.clock c;
        since_pos := (SELECT o.pos FROM goalrt.event_order o WHERE o.event_id = p_since);
        IF since_pos IS NULL THEN
            -- Neither it nor an event appended before it has a position (a
            -- positioned one is ordered before it). Such an event, committed
            -- before this wait's lock was tried, joins the since point's
            -- batch, ordered before it, unless a tick in flight took its
            -- snapshot between their commits. With the clock's lock free
            -- (no tick in flight) and the since point still without a
            -- position after that, none can be after it. The since point
            -- of this very transaction (since="wait") has no such question.
            IF (SELECT e.xid FROM goalrt.event_data e WHERE e.id = p_since) = pg_current_xact_id() THEN
                RETURN;
            END IF;
            IF pg_try_advisory_lock_shared('goalrt.clock'::regclass::oid::integer, 1) THEN
                PERFORM pg_advisory_unlock_shared('goalrt.clock'::regclass::oid::integer, 1);
                IF NOT EXISTS (SELECT 1 FROM goalrt.event_order o WHERE o.event_id = p_since) THEN
                    RETURN;
                END IF;
            END IF;
            settled := false;
            RETURN;
        END IF;
        SELECT e.id, e.stream, e.type, e.data INTO ev
          FROM goalrt.late_events l JOIN goalrt.event_data e ON e.id = l.event_id
         WHERE l.type = p_type AND l.pos > since_pos AND l.event_id < p_since
           AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
         ORDER BY l.pos LIMIT 1;
        IF ev.id IS NULL THEN
            -- Committed and not positioned yet (the next tick's batch, found
            -- as tick() finds it): their positions will be larger.
            SELECT e.id, e.stream, e.type, e.data INTO ev
              FROM (SELECT e0.* FROM goalrt.event_data e0
                     WHERE e0.xid >= pg_snapshot_xmax(snap)
                    UNION ALL
                    SELECT e0.* FROM goalrt.event_data e0
                     WHERE e0.xid = ANY (ARRAY(SELECT pg_snapshot_xip(snap)))) e
             WHERE e.type = p_type AND e.id < p_since AND NOT pg_visible_in_snapshot(e.xid, snap)
               AND e.xid <> pg_current_xact_id()
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
             ORDER BY e.id LIMIT 1;
        END IF;
    END IF;
    IF ev.id IS NOT NULL THEN
        hit := jsonb_build_object('id', ev.id, 'stream', ev.stream, 'type', ev.type, 'data', ev.data);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.release_limits(p_goal bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    h record;
    woken bigint;
BEGIN
    FOR h IN SELECT lh.action, lh.key_arg, lh.key FROM goalrt.limit_holders lh
              WHERE lh.goal_id = p_goal ORDER BY lh.action, lh.key_arg, lh.key
    LOOP
        PERFORM 1 FROM goalrt.limit_buckets lb
         WHERE lb.action = h.action AND lb.key_arg = h.key_arg AND lb.key = h.key FOR UPDATE;
        DELETE FROM goalrt.limit_holders lh
         WHERE lh.goal_id = p_goal AND lh.action = h.action AND lh.key_arg = h.key_arg;
        UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
         WHERE g.id = (SELECT b.id FROM goalrt.goals b
                        WHERE b.blocked_on = h.action || '|' || h.key_arg || '|' || h.key
                        ORDER BY b.priority DESC, b.id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING g.id INTO woken;
        IF woken IS NOT NULL THEN
            PERFORM pg_notify('goalrt_goals', '');
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.end_goal(p_goal bigint, p_status text, p_result jsonb, p_error text, detail jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g goalrt.goals;
    c bigint;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal FOR UPDATE;
    IF NOT FOUND OR g.status IN ('complete', 'failed', 'cancelled') THEN
        RETURN;
    END IF;
    UPDATE goalrt.goal_steps st SET status = 'cancelled', finished_at = now()
     WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
    DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
    PERFORM goalrt.release_limits(g.id);
    IF p_status = 'complete' AND g.status = 'waiting' THEN
        UPDATE goalrt.goals SET status = 'active' WHERE goals.id = g.id;
    END IF;
    UPDATE goalrt.goals
       SET status = p_status, result = p_result, last_error = p_error, step_seq = NULL, lease_owner = NULL,
           lease_expires_at = NULL, wake_at = NULL, blocked_on = NULL, updated_at = now(), finished_at = now()
     WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id,
            CASE p_status WHEN 'complete' THEN 'goal.completed' ELSE 'goal.' || p_status END,
            CASE p_status
              WHEN 'complete' THEN jsonb_build_object('goal_id', g.id, 'result', p_result)
              ELSE jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'error', p_error))
            END || coalesce(detail, '{}'));
    IF g.lease_owner IS NOT NULL AND p_status <> 'complete' THEN
        PERFORM pg_notify('goalrt_cancel', g.id::text);
    END IF;
    FOR c IN SELECT k.id FROM goalrt.goals k
              WHERE k.parent_id = g.id AND k.status IN ('pending', 'active', 'waiting') ORDER BY k.id
    LOOP
        PERFORM goalrt.end_goal(c, 'cancelled', NULL, format('parent goal %s %s', g.id, p_status),
                                jsonb_build_object('reason', format('parent goal %s %s', g.id, p_status)));
    END LOOP;
    IF g.parent_id IS NOT NULL THEN
        PERFORM goalrt.child_ended(g.parent_id, g.id);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.finish_wait(p_goal bigint, p_result jsonb, timed_out boolean, detail jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    g     goalrt.goals;
    s     goalrt.goal_steps;
    c     bigint;
    first integer;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal FOR UPDATE;
    IF NOT FOUND OR g.status <> 'waiting' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
    DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
    UPDATE goalrt.goals SET status = 'active', wake_at = NULL, updated_at = now() WHERE goals.id = g.id;
    IF NOT timed_out THEN
        UPDATE goalrt.goal_steps st SET status = 'complete', result = p_result, finished_at = now()
         WHERE st.goal_id = g.id AND st.seq = s.seq;
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.resumed',
                jsonb_build_object('goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'result', p_result, 'waited', true)
                || coalesce(detail, '{}'));
        RETURN goalrt.advance_goal(g.id, goalrt.next_step(g.id, s.seq, g.plan_no), NULL, NULL, p_result);
    END IF;

    UPDATE goalrt.goal_steps st SET status = 'failed', error = 'wait_timeout', finished_at = now()
     WHERE st.goal_id = g.id AND st.seq = s.seq;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.wait_timeout',
            jsonb_build_object('goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args));
    -- Child goals of a children wait that timed out are no longer wanted.
    FOR c IN SELECT k.id FROM goalrt.goals k
              WHERE k.parent_id = g.id AND k.parent_step = s.seq AND k.status IN ('pending', 'active', 'waiting')
              ORDER BY k.id
    LOOP
        PERFORM goalrt.end_goal(c, 'cancelled', NULL, 'the parent''s wait timed out',
                                jsonb_build_object('reason', 'the parent''s wait timed out'));
    END LOOP;
    IF jsonb_typeof(s.args -> 'on_timeout') = 'array' AND jsonb_array_length(s.args -> 'on_timeout') > 0 THEN
        first := goalrt.insert_plan(g.id, s.args -> 'on_timeout', 'wait_timeout', NULL);
        RETURN goalrt.advance_goal(g.id, first, NULL, NULL, NULL);
    END IF;
    PERFORM goalrt.end_goal(
        g.id, 'failed', NULL,
        format('wait_timeout: step %s (%s %s) timed out after %ss', s.seq, s.kind, s.action, s.args ->> 'timeout'),
        jsonb_build_object('seq', s.seq));
    RETURN 'failed';
END
$$;

CREATE OR REPLACE FUNCTION goalrt.child_ended(p_parent bigint, p_child bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p        goalrt.goals;
    s        goalrt.goal_steps;
    c        goalrt.goals;
    mode     text;
    open_n   integer;
    done_n   integer;
    kids     jsonb;
    sib      bigint;
BEGIN
    SELECT * INTO p FROM goalrt.goals WHERE goals.id = p_parent FOR UPDATE;
    IF NOT FOUND OR p.status <> 'waiting' THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = p.id AND st.seq = p.step_seq;
    SELECT * INTO c FROM goalrt.goals WHERE goals.id = p_child;
    IF s.kind <> 'children' OR c.parent_step IS DISTINCT FROM s.seq THEN
        RETURN;
    END IF;
    mode := coalesce(s.args ->> 'mode', 'all');
    SELECT count(*) FILTER (WHERE k.status IN ('pending', 'active', 'waiting')),
           count(*) FILTER (WHERE k.status = 'complete')
      INTO open_n, done_n
      FROM goalrt.goals k WHERE k.parent_id = p.id AND k.parent_step = s.seq;
    IF c.status <> 'complete' AND coalesce(s.args ->> 'on_failure', 'fail') = 'fail'
       AND (mode = 'all' OR (open_n = 0 AND done_n = 0)) THEN
        PERFORM goalrt.end_goal(
            p.id, 'failed', NULL,
            format('child goal %s (%s) %s: %s', c.id, c.name, c.status, coalesce(c.last_error, c.status)),
            jsonb_build_object('seq', s.seq, 'child', c.id));
        RETURN;
    END IF;
    IF open_n = 0 OR (mode = 'any' AND c.status = 'complete') THEN
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                   'id', k.id, 'name', k.name, 'status', k.status, 'result', k.result, 'error', k.last_error))
                   ORDER BY k.id)
          INTO kids
          FROM goalrt.goals k WHERE k.parent_id = p.id AND k.parent_step = s.seq;
        PERFORM goalrt.finish_wait(p.id, jsonb_build_object('children', kids, 'first', c.id), false,
                                   jsonb_build_object('child', c.id));
        FOR sib IN SELECT k.id FROM goalrt.goals k
                    WHERE k.parent_id = p.id AND k.parent_step = s.seq AND k.status IN ('pending', 'active', 'waiting')
                    ORDER BY k.id
        LOOP
            PERFORM goalrt.end_goal(sib, 'cancelled', NULL, format('child goal %s completed first', c.id),
                                    jsonb_build_object('reason', format('child goal %s completed first', c.id)));
        END LOOP;
    END IF;
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
        SELECT DISTINCT ON (q.goal_id) q.* FROM (
            SELECT w.goal_id, n.id, n.stream, n.type, n.data,
                   n.id > w.since_id
                   OR EXISTS (SELECT 1 FROM goalrt.event_order o WHERE o.event_id = w.since_id) AS counts
              FROM goalrt.event_data n
              CROSS JOIN LATERAL (
                  SELECT w0.goal_id, w0.since_id, w0.filter FROM goalrt.goal_waits w0
                   WHERE w0.event_type = n.type AND w0.match_key IS NULL
                  UNION ALL
                  SELECT w1.goal_id, w1.since_id, w1.filter FROM goalrt.goal_waits w1
                   WHERE w1.event_type = n.type AND w1.match_key = ANY (goalrt.match_keys(n.data))
              ) w
             WHERE n.id = ANY (ids) AND (w.filter = '{}' OR n.data @> w.filter)) q
         ORDER BY q.goal_id, NOT q.counts, q.id
    LOOP
        IF m.counts THEN
            PERFORM goalrt.finish_wait(
                m.goal_id,
                jsonb_build_object('event', jsonb_build_object('id', m.id, 'stream', m.stream, 'type', m.type,
                                                               'data', m.data)),
                false, NULL);
        ELSE
            INSERT INTO goalrt.wait_rechecks (goal_id) VALUES (m.goal_id);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.recheck_waits(max_count integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r     record;
    g     goalrt.goals;
    s     goalrt.goal_steps;
    since bigint;
    lb    record;
    alts  jsonb;
    n     integer := 0;
BEGIN
    FOR r IN SELECT q.id, q.goal_id FROM goalrt.wait_rechecks q
              WHERE q.due_at <= now() ORDER BY q.due_at LIMIT max_count FOR UPDATE SKIP LOCKED
    LOOP
        DELETE FROM goalrt.wait_rechecks q WHERE q.id = r.id;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = r.goal_id FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            IF EXISTS (SELECT 1 FROM goalrt.goals WHERE goals.id = r.goal_id) THEN
                INSERT INTO goalrt.wait_rechecks (goal_id, due_at) VALUES (r.goal_id, now() + interval '1 second');
            END IF;
            CONTINUE;
        END IF;
        SELECT min(w.since_id) INTO since FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
        IF g.status <> 'waiting' OR since IS NULL THEN
            CONTINUE;
        END IF;
        SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
        alts := CASE WHEN jsonb_typeof(s.args -> 'where') = 'array' THEN s.args -> 'where'
                     ELSE jsonb_build_array(coalesce(s.args -> 'where', '{}')) END;
        lb := goalrt.wait_look_back(s.args ->> 'event', alts, since);
        IF lb.hit IS NOT NULL THEN
            PERFORM goalrt.finish_wait(g.id, jsonb_build_object('event', lb.hit), false, NULL);
            n := n + 1;
        ELSIF NOT lb.settled THEN
            INSERT INTO goalrt.wait_rechecks (goal_id, due_at) VALUES (g.id, now() + interval '1 second');
        END IF;
    END LOOP;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.wake_due_v1(max_count integer DEFAULT 100) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    r     record;
    n     integer := 0;
    woken integer;
BEGIN
    WITH due AS (
        SELECT g.id FROM goalrt.goals g
         WHERE g.wake_at <= now() AND g.status IN ('pending', 'active')
         ORDER BY g.wake_at LIMIT max_count
           FOR UPDATE SKIP LOCKED
    )
    UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL FROM due WHERE g.id = due.id;
    GET DIAGNOSTICS woken = ROW_COUNT;
    n := n + woken + goalrt.recheck_waits(max_count);
    FOR r IN SELECT g.id, g.wake_at, s.kind
               FROM goalrt.goals g
               JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
              WHERE g.wake_at <= now() AND g.status = 'waiting'
              ORDER BY g.wake_at LIMIT max_count
                FOR UPDATE OF g SKIP LOCKED
    LOOP
        IF r.kind = 'sleep' THEN
            PERFORM goalrt.finish_wait(r.id, jsonb_build_object('slept_until', r.wake_at), false, NULL);
        ELSE
            PERFORM goalrt.finish_wait(r.id, NULL, true, NULL);
        END IF;
        n := n + 1;
    END LOOP;
    FOR r IN SELECT g.id, g.deadline_at FROM goalrt.goals g
              WHERE g.deadline_at <= now() AND g.status IN ('pending', 'active', 'waiting')
              ORDER BY g.deadline_at LIMIT max_count
                FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM goalrt.end_goal(r.id, 'failed', NULL, 'deadline_exceeded: the deadline ' || r.deadline_at || ' passed',
                                jsonb_build_object('deadline', r.deadline_at));
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
    RETURN n;
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
            RAISE EXCEPTION 'limit option % must be an integer from 1 to 999999999', f USING ERRCODE = 'GR008';
        END IF;
    END LOOP;
    -- A bucket's wait for its next token is up to `per` seconds, taken as an
    -- interval: a longer one overflows (or a tinier one underflows) there.
    IF o ? 'per' AND (jsonb_typeof(o -> 'per') <> 'number' OR (o ->> 'per')::numeric < 0.001
                      OR (o ->> 'per')::numeric > 31536000) THEN
        RAISE EXCEPTION 'limit option per must be a number of seconds from 0.001 to 31536000 (a year)'
            USING ERRCODE = 'GR008';
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

CREATE OR REPLACE FUNCTION goalrt.drop_limit(action text, key_arg text DEFAULT '') RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    b text;
BEGIN
    DELETE FROM goalrt.limits l WHERE l.action = drop_limit.action AND l.key_arg = coalesce(drop_limit.key_arg, '');
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM goalrt.limit_buckets lb WHERE lb.action = drop_limit.action AND lb.key_arg = coalesce(drop_limit.key_arg, '');
    DELETE FROM goalrt.limit_holders h WHERE h.action = drop_limit.action AND h.key_arg = coalesce(drop_limit.key_arg, '');
    -- Goals it parked may run now.
    b := drop_limit.action || '|' || coalesce(drop_limit.key_arg, '') || '|';
    UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
     WHERE g.blocked_on IS NOT NULL AND left(g.blocked_on, length(b)) = b;
    PERFORM pg_notify('goalrt_goals', '');
    RETURN true;
END
$$;

DROP FUNCTION goalrt.recheck_later(bigint);
DROP FUNCTION goalrt.lock_limits(bigint[], jsonb, boolean);
DROP FUNCTION goalrt.limit_keys(bigint[], jsonb);
DROP FUNCTION goalrt.lock_goals(bigint[]);
DROP FUNCTION goalrt.step_started_v1(bigint);
DROP FUNCTION goalrt.step_start_v2(text, bigint[], bigint[], integer[]);
DROP FUNCTION goalrt.step_start_v1(text, bigint, bigint, integer);
DROP FUNCTION goalrt.step_may_start(text, bigint, bigint, integer);
DROP TABLE goalrt.limit_rechecks;

COMMENT ON TABLE goalrt.wait_rechecks IS 'Event waits to look back for again: their start could not see every event.';
