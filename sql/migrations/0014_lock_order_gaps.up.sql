-- Two gaps in the lock order (35_workers.sql) closed:
-- claim_goals_v2 takes its admissions' buckets in key order also as the first call of a
-- session (goalrt.late_locks reads NULL there, which had skipped the ordered locking);
-- submit_goals takes a lock per idempotency key of a batch first, in one order, so two
-- batches with the same new keys in opposite orders no longer deadlock.

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
    -- (The setting is NULL, not '', in a session that never set it.)
    late := current_setting('goalrt.late_locks', true) IS NOT DISTINCT FROM 'on';
    IF NOT late AND EXISTS (SELECT 1 FROM goalrt.limits) THEN  -- (no limit, no bucket to lock)
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

CREATE OR REPLACE FUNCTION goalrt.submit_goals(goals jsonb)
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
