-- Workers run only the steps they can (issue 16, item 1): a registered
-- worker claims a goal only to plan it or to run a step whose action it
-- registered, and hands a goal over when the next step is not one of its
-- actions; goalrt.unserved_action(goal) names the step no live worker can run.

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
    runnable text[];
    late     boolean;
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
    SELECT w.actions INTO runnable FROM goalrt.workers w WHERE w.id = worker_id;
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
           AND (runnable IS NULL OR g.step_seq IS NULL
                OR EXISTS (SELECT 1 FROM goalrt.goal_steps s
                            WHERE s.goal_id = g.id AND s.seq = g.step_seq
                              AND (s.kind <> 'action' OR s.action = ANY (runnable))))
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
           FOR NO KEY UPDATE SKIP LOCKED
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
    -- Steps of limited actions start only when admitted, their buckets
    -- locked first in key order (lock order, see the top of this file). When
    -- what was due took a lock out of that order, no bucket is waited for:
    -- a goal whose bucket another transaction holds is left for the next claim.
    late := current_setting('goalrt.late_locks', true) = 'on';
    IF NOT late THEN
        PERFORM goalrt.lock_limits('{}', (
            SELECT jsonb_agg(jsonb_build_object('action', s.action, 'args', s.args))
              FROM goalrt.goals g
              JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
             WHERE g.id = ANY (ids) AND s.kind = 'action'));
    END IF;
    FOR cand IN SELECT g.id, g.step_seq, s.action, s.args, g.lease_epoch
               FROM goalrt.goals g
               JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
              WHERE g.id = ANY (ids) AND s.kind = 'action'
                AND EXISTS (SELECT 1 FROM goalrt.limits l WHERE l.action = s.action)
              ORDER BY g.priority DESC, g.run_at, g.id
    LOOP
        IF late AND NOT goalrt.lock_limits('{}', jsonb_build_array(jsonb_build_object('action', cand.action,
                                                                                      'args', cand.args)), false) THEN
            ids := array_remove(ids, cand.id);
        ELSIF goalrt.admit_step(cand.id, cand.step_seq, cand.action, cand.args, cand.lease_epoch + 1) IS NOT NULL THEN
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

CREATE OR REPLACE FUNCTION goalrt.advance_goal(
    p_goal bigint, p_next integer, p_worker text, lease_seconds double precision, p_result jsonb
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    g        goalrt.goals;
    s        goalrt.goal_steps;
    nxt      integer := p_next;
    res      jsonb := p_result;
    due      timestamptz;
    since    bigint;
    lb       record;
    logged   boolean := false;
    kids     jsonb := '[]';
    alts     jsonb;
    child    jsonb;
    i        integer := 0;
    made     record;
BEGIN
    LOOP
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal;
        IF nxt IS NULL THEN
            PERFORM goalrt.end_goal(g.id, 'complete', res, NULL, NULL);
            RETURN 'complete';
        END IF;
        SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = nxt;
        IF s.kind = 'action' THEN
            IF p_worker IS NOT NULL AND g.lease_owner = p_worker
               AND NOT EXISTS (SELECT 1 FROM goalrt.workers w
                                WHERE w.id = p_worker AND NOT s.action = ANY (w.actions)) THEN
                IF goalrt.admit_step(g.id, s.seq, s.action, s.args, g.lease_epoch) IS NOT NULL THEN
                    RETURN 'blocked';
                END IF;
                UPDATE goalrt.goal_steps st SET status = 'running', attempts = st.attempts + 1, started_at = now()
                 WHERE st.goal_id = g.id AND st.seq = s.seq;
                UPDATE goalrt.goals
                   SET step_seq = s.seq, updated_at = now(),
                       lease_expires_at = greatest(g.lease_expires_at, now() + make_interval(secs => lease_seconds))
                 WHERE goals.id = g.id;
                RETURN 'continue';
            END IF;
            UPDATE goalrt.goals
               SET status = 'active', step_seq = s.seq, lease_owner = NULL, lease_expires_at = NULL,
                   wake_at = NULL, blocked_on = NULL, updated_at = now()
             WHERE goals.id = g.id;
            -- Claimable now (a wait ended, or a draining worker left it): wake
            -- an idle worker rather than leave it to the next poll.
            PERFORM pg_notify('goalrt_goals', '');
            RETURN 'released';
        END IF;

        -- A wait. It may be over before it starts; then go on to the next step.
        UPDATE goalrt.goal_steps st SET status = 'running', attempts = st.attempts + 1, started_at = now()
         WHERE st.goal_id = g.id AND st.seq = s.seq;
        due := CASE WHEN s.args ? 'timeout' THEN now() + make_interval(secs => (s.args ->> 'timeout')::float8) END;
        res := NULL;
        logged := false;
        IF s.kind = 'sleep' THEN
            due := coalesce((s.args ->> 'until')::timestamptz,
                            now() + make_interval(secs => (s.args ->> 'seconds')::float8));
            IF due <= now() THEN
                res := jsonb_build_object('slept_until', due);
            END IF;
        ELSIF s.kind = 'event' THEN
            alts := CASE WHEN jsonb_typeof(s.args -> 'where') = 'array' THEN s.args -> 'where'
                         ELSE jsonb_build_array(coalesce(s.args -> 'where', '{}')) END;
            -- The since point: the goal's submit, or this wait's goal.waiting
            -- (written first, so that its id exists).
            IF coalesce(s.args ->> 'since', 'submit') = 'submit' THEN
                SELECT min(e.id) INTO since FROM goalrt.event_data e
                 WHERE e.stream = 'goal:' || g.id AND e.type = 'goal.submitted';
            ELSE
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES ('goal:' || g.id, 'goal.waiting',
                        jsonb_strip_nulls(jsonb_build_object(
                            'goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args, 'until', due)))
                RETURNING event_data.id INTO since;
                logged := true;
            END IF;
            since := coalesce(since, 0);
            lb := goalrt.wait_look_back(s.args ->> 'event', alts, since);
            IF lb.hit IS NOT NULL THEN
                res := jsonb_build_object('event', lb.hit);
            ELSE
                DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
                INSERT INTO goalrt.goal_waits (goal_id, alt, seq, event_type, filter, since_id, match_key)
                SELECT g.id, f.n::integer - 1, s.seq, s.args ->> 'event', f.v, since,
                       (goalrt.match_keys(f.v))[1]
                  FROM jsonb_array_elements(alts) WITH ORDINALITY AS f(v, n);
                IF NOT lb.settled THEN
                    INSERT INTO goalrt.wait_rechecks (goal_id) VALUES (g.id);
                END IF;
            END IF;
        ELSIF s.kind = 'children' THEN
            kids := '[]';
            i := 0;
            FOR child IN SELECT e FROM jsonb_array_elements(s.args -> 'goals') WITH ORDINALITY AS t(e, n) ORDER BY n LOOP
                SELECT * INTO made FROM goalrt.submit_one(
                    child ->> 'name', child -> 'params',
                    coalesce(child -> 'options', '{}') || jsonb_build_object('parent_id', g.id),
                    format('goal %s step %s: goals[%s]: ', g.id, s.seq, i));
                UPDATE goalrt.goals k SET parent_step = s.seq WHERE k.id = made.id AND k.parent_id = g.id;
                kids := kids || to_jsonb(made.id);
                i := i + 1;
            END LOOP;
            IF jsonb_array_length(kids) = 0 THEN
                res := jsonb_build_object('children', '[]'::jsonb);
            ELSE
                PERFORM pg_notify('goalrt_goals', '');
            END IF;
        END IF;

        IF res IS NOT NULL THEN
            UPDATE goalrt.goal_steps st SET status = 'complete', result = res, finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = s.seq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('goal:' || g.id, 'goal.resumed',
                    jsonb_build_object('goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'result', res, 'waited', false));
            nxt := goalrt.next_step(g.id, s.seq, g.plan_no);
            CONTINUE;
        END IF;
        UPDATE goalrt.goals
           SET status = 'waiting', step_seq = s.seq, lease_owner = NULL, lease_expires_at = NULL, wake_at = due,
               blocked_on = NULL, updated_at = now()
         WHERE goals.id = g.id;
        IF NOT logged THEN
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('goal:' || g.id, 'goal.waiting',
                    jsonb_strip_nulls(jsonb_build_object(
                        'goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args, 'until', due,
                        'children', CASE WHEN s.kind = 'children' THEN kids END)));
        END IF;
        RETURN 'waiting';
    END LOOP;
END
$$;

CREATE FUNCTION goalrt.unserved_action(g goalrt.goals) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT s.action
      FROM goalrt.goal_steps s
     WHERE s.goal_id = g.id AND s.seq = g.step_seq AND s.kind = 'action'
       AND g.status IN ('pending', 'active')
       AND (g.lease_owner IS NULL OR g.lease_expires_at <= now())
       AND NOT EXISTS (SELECT 1 FROM goalrt.workers w
                        WHERE s.action = ANY (w.actions) AND g.name = ANY (w.goal_types)
                          AND w.last_seen > now() - interval '1 minute');
$$;

COMMENT ON FUNCTION goalrt.unserved_action(goalrt.goals) IS
    'The action of the goal''s next step when no live worker can run it (the goal waits for one), else NULL.';

REVOKE ALL ON FUNCTION goalrt.unserved_action(goalrt.goals) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION goalrt.unserved_action(goalrt.goals) TO goalrt_reader, goalrt_writer, goalrt_admin;
END
$$;
