-------------------------------------------------------------------------------
-- Workers
--
-- What a worker process calls, in the order of a goal's run: register,
-- claim (which first acts on what is due), plan, complete steps, and fail,
-- heartbeat or release the goals it holds. A call acts on a goal only while
-- the worker holds its lease at the epoch of the claim (the lease model is
-- described in 30_goals.sql). The waits and limits a step may meet are in
-- 40_coordination.sql.
--
-- Lock order. goalrt's functions wait for locks only in this order, so none
-- of them ever waits for a lock held by one that waits for it (no deadlock
-- between them):
--
--   0. idempotency keys, in hash order: submit_goals takes those of all
--      the keys of a batch first (an advisory lock per key);
--   1. goal rows, in id order: a function first locks the goals it acts on
--      and, where it may end them, their unfinished descendants (a child's
--      id is larger than its parent's: parents before children);
--      lock_goals. Goal rows are locked FOR NO KEY UPDATE (ids never
--      change), which never blocks the key-share lock that a child's
--      insert or update takes on its parent (its foreign key);
--   2. limit buckets, in (action, key_arg, key) order: those its goals'
--      slots use and those the steps it may start would take; lock_limits;
--   3. state paths, in byte order (change_state; complete_steps_v1 locks
--      the paths of all its items at once);
--   4. event-type locks, shared, in key order (match_appended;
--      complete_steps_v1 takes those of all its items at once);
--   5. GDL policy locks, in (policy name, key) order (lock_policies, from
--      check_policies; complete_steps_v1 takes those of all its items at
--      once). Two calls in one transaction can take them out of that order
--      (a deadlock PostgreSQL detects: one of the two is rolled back).
--
-- Whatever a function locks beyond that it takes without waiting (SKIP
-- LOCKED, a try-lock): the parent of a goal that ends, its children, a
-- goal whose event wait an append matched, the bucket of a slot it frees,
-- the exclusive event-type lock of a wait's look-back. What another
-- transaction holds is recorded (wait_rechecks, limit_rechecks) and done
-- by the next wake_due_v1. A claim acts on what is due first; once that
-- took a lock out of the order (goalrt.late_locks is on), its admissions
-- wait for no bucket either, and leave a goal whose bucket is held to the
-- next claim.
--
-- Start locks: ending a goal takes its start lock (an advisory lock)
-- shared, and a worker takes it exclusively, holding no other lock, while
-- it checks and starts a step's handler (step_start_v1). So no handler
-- starts once the end of its goal, or of an ancestor, has committed.
-------------------------------------------------------------------------------

-- Record a worker process and the partitions it serves (NULL: all), and
-- clear rows of workers unseen for a day.
CREATE FUNCTION goalrt.register_worker_v2(
    worker_id text, name text, hostname text, pid integer, concurrency integer, goal_types text[], actions text[],
    partitions integer[], partition_count integer
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    IF (partitions IS NULL) <> (partition_count IS NULL) OR partition_count < 1
       OR EXISTS (SELECT 1 FROM unnest(partitions) p WHERE p IS NULL OR p < 0 OR p >= partition_count) THEN
        RAISE EXCEPTION 'partitions must be buckets 0..% of partition_count', coalesce(partition_count - 1, 0)
            USING ERRCODE = 'GR008';
    END IF;
    DELETE FROM goalrt.workers w WHERE w.last_seen < now() - interval '1 day';
    INSERT INTO goalrt.workers AS w (id, name, hostname, pid, concurrency, goal_types, actions, partitions,
                                     partition_count, db_role)
    VALUES (worker_id, register_worker_v2.name, register_worker_v2.hostname, register_worker_v2.pid,
            register_worker_v2.concurrency, coalesce(register_worker_v2.goal_types, '{}'),
            coalesce(register_worker_v2.actions, '{}'), register_worker_v2.partitions,
            register_worker_v2.partition_count, session_user)
    ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE
       SET name = excluded.name, hostname = excluded.hostname, pid = excluded.pid,
           concurrency = excluded.concurrency, goal_types = excluded.goal_types, actions = excluded.actions,
           partitions = excluded.partitions, partition_count = excluded.partition_count,
           started_at = now(), last_seen = now(), db_role = excluded.db_role
     WHERE w.db_role IS NULL OR w.db_role = excluded.db_role;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker id % is registered by database role %, not %', worker_id,
            (SELECT w.db_role FROM goalrt.workers w WHERE w.id = worker_id), session_user
            USING ERRCODE = '42501';
    END IF;
END
$$;

-- register_worker_v2 without partitions, for workers of earlier versions.
CREATE FUNCTION goalrt.register_worker_v1(
    worker_id text, name text, hostname text, pid integer, concurrency integer, goal_types text[], actions text[]
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT goalrt.register_worker_v2(worker_id, name, hostname, pid, concurrency, goal_types, actions, NULL, NULL);
$$;

-- Remove a worker's row (a clean exit); another role's worker stays.
CREATE FUNCTION goalrt.deregister_worker_v1(worker_id text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    DELETE FROM goalrt.workers w WHERE w.id = worker_id AND (w.db_role IS NULL OR w.db_role = session_user);
$$;

-- The action of goal g's next step when no live worker (seen within the
-- last minute: workers heartbeat at least every 20 s) registered it and the
-- goal's type, so the goal waits for a worker that can run it; NULL
-- otherwise (the goal is not pending or active, has no step to run, is
-- leased, or a live worker can take the step). Read at query time: `goalrt
-- get` and `goalrt list` show it.
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

-- Claim up to max_count runnable goals for a worker, in claim order
-- (priority DESC, run_at, id), skipping rows other claimers hold. A
-- runnable goal is pending or active, due (no wake_at), and not leased (or
-- its lease expired: its worker died or stalled, and this claim takes it
-- over). Each claim increments the lease epoch, counts an attempt of the
-- goal's current step and marks it running. Returns the claimed goals with
-- the step to run (step_seq NULL: the goal has no plan yet).
--
-- A step still running when its lease expired was interrupted: its worker
-- died (or stalled) running it, and that attempt was counted when it
-- started. When such a step has used its max_attempts, the claim fails
-- the step and its goal (step.failed, goal.failed, saying the worker died
-- running it) instead of starting it again.
--
-- First acts on what is due (wake_due_v1). A step of a limited action must
-- be admitted (admit_step); a goal that is not is parked instead of
-- claimed (or left runnable for the next claim when its bucket is locked
-- and this claim may not wait for it: see the lock order above). A worker
-- given partitions (buckets of partition_count) takes goals of those
-- partitions and goals without a partition key; a worker without takes
-- the rest, and a served partition's goals too once they have waited
-- takeover_seconds (so nothing starves if its worker is gone).
--
-- A registered worker takes only goals it can run: those still to be
-- planned (any worker plans) and those whose next step's action is one of
-- the actions it registered (register_worker_v2). A caller that never
-- registered (psql, a test) takes any goal, as before workers told.
CREATE FUNCTION goalrt.claim_goals_v2(
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
           SET status = 'active', lease_owner = worker_id, lease_role = session_user, lease_epoch = g.lease_epoch + 1,
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
         -- A goal still to be planned records its start in its first
         -- goal.planned (the worker and epoch are there): one event, not two.
         -- One whose lease expired before it was planned is recorded here.
         WHERE (c.was = 'pending' AND c.plan_no > 0) OR (c.was <> 'pending' AND c.prev_owner IS NOT NULL)
         ORDER BY c.id
    )
    -- (Data-modifying CTEs run to completion whether or not they are read.)
    SELECT c.id, c.name, c.params, c.lease_epoch, c.plan_no, c.step_seq, s.action, s.args, s.attempts
      FROM claimed c
      LEFT JOIN started s ON s.goal_id = c.id
     ORDER BY c.priority DESC, c.run_at, c.id;
END
$$;

COMMENT ON FUNCTION goalrt.claim_goals_v2(text, integer, double precision, text[], integer[], integer, double precision) IS
    'Claim runnable goals in (priority DESC, run_at, id) order with SKIP LOCKED, honouring limits and partitions.';

-- claim_goals_v2 without partitions, for workers of earlier versions.
CREATE FUNCTION goalrt.claim_goals_v1(
    worker_id text, max_count integer, lease_seconds double precision, goal_types text[] DEFAULT NULL
) RETURNS TABLE (
    goal_id bigint, name text, params jsonb, epoch bigint, plan_no integer, step_seq integer,
    action text, args jsonb, attempt integer
)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT * FROM goalrt.claim_goals_v2(worker_id, max_count, lease_seconds, goal_types, NULL, NULL, 10);
$$;

COMMENT ON FUNCTION goalrt.claim_goals_v1(text, integer, double precision, text[]) IS
    'Claim runnable goals in (priority DESC, run_at, id) order with SKIP LOCKED, leasing each with a new epoch.';

-- claim_goals_v2 with each goal's trace_context (the caller's traceparent
-- given at submit, NULL when none was): the worker's spans for the goal
-- continue that trace. The claimed rows, in claim order, each joined with
-- its goal by primary key.
CREATE FUNCTION goalrt.claim_goals_v3(
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

COMMENT ON FUNCTION goalrt.claim_goals_v3(text, integer, double precision, text[], integer[], integer, double precision) IS
    'claim_goals_v2 with each goal''s trace_context (the caller''s W3C traceparent given at submit, or NULL).';

-- Whether worker_id, in a session of the database role that took the
-- lease, holds goal g's lease at epoch `epoch` right now. Never NULL: a
-- released lease (no owner, no expiry) is not held, and `NOT
-- holds_lease(...)` must then be true. The role check makes the lease an
-- authorization, not only a fencing token: another role that reads
-- lease_owner and lease_epoch from goalrt.goals still cannot act under it.
-- No SET clause and one expression, so PostgreSQL inlines it into the
-- query that calls it (g.status etc. become that query's own columns); its
-- callers are SECURITY DEFINER functions that set their search_path, and it
-- names nothing but g's columns and pg_catalog.
CREATE FUNCTION goalrt.holds_lease(g goalrt.goals, worker_id text, epoch bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(g.status = 'active' AND g.lease_owner = worker_id AND g.lease_epoch = epoch
                    AND g.lease_expires_at > now() AND g.lease_role = session_user, false)
$$;

-- Why a result under (worker, epoch) is refused for goal g.
CREATE FUNCTION goalrt.lease_lost_reason(g goalrt.goals, worker_id text, epoch bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT CASE
             WHEN g.status <> 'active' THEN 'goal is ' || g.status
             WHEN g.lease_epoch <> epoch THEN format('lease epoch %s was superseded by epoch %s', epoch, g.lease_epoch)
             WHEN g.lease_owner IS DISTINCT FROM worker_id THEN 'lease was released'
             WHEN g.lease_role IS DISTINCT FROM session_user
                  THEN format('the lease is held by database role %s, not %s', g.lease_role, session_user)
             ELSE 'lease expired at ' || g.lease_expires_at
           END
$$;

-- Store the plans a worker computed for goals it holds: a JSON array of
-- {"goal_id", "epoch", "steps": [{"action", "args", "kind", "label"}, ...],
-- "replan": bool, "reason": text, "detail": {...}}. A goal already planned
-- keeps its plan unless replan is true; then the steps left of the earlier
-- plan are superseded. reason and detail (the planner's cost, ground
-- actions, state versions) are recorded in goal.planned. The first
-- step of the new plan starts at once (see advance_goal). Returns per goal
-- the outcome: 'planned' (with the step to run), 'complete', 'waiting',
-- 'blocked' (a limit parked it), or 'refused' (the lease was lost;
-- recorded as an event).
CREATE FUNCTION goalrt.plan_goals_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    locked  bigint[];
    x       jsonb;
    g       goalrt.goals;
    ep      bigint;
    first   integer;
    cur     goalrt.goal_steps;
    problem text;
    fast    bigint[];
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    -- Lock order (see the top of this file): the goals and their subtrees,
    -- then the buckets of their slots and of each plan's first action.
    locked := goalrt.lock_goals(ARRAY(SELECT (e ->> 'goal_id')::bigint FROM jsonb_array_elements(items) AS t(e)));
    IF EXISTS (SELECT 1 FROM goalrt.limits) THEN  -- (no limit, no bucket to lock)
        PERFORM goalrt.lock_limits(
            locked,
            (SELECT jsonb_agg(f.st)
               FROM jsonb_array_elements(items) AS t(e),
                    LATERAL (SELECT st FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e -> 'steps') = 'array'
                                                                      THEN e -> 'steps' ELSE '[]' END)
                                            WITH ORDINALITY AS u(st, i)
                              WHERE coalesce(st ->> 'kind', 'action') = 'action' ORDER BY i LIMIT 1) f));
    END IF;
    -- The common case, for the whole batch at once: a goal's first plan,
    -- under this worker's lease, whose first step is an action with no
    -- limit that this worker can run. What the loop below would do for it
    -- (insert_plan, then advance_goal starting the first step), done in a
    -- few statements for all such goals: the first step is inserted
    -- running. Everything else goes through the loop.
    SELECT coalesce(array_agg(c.gid ORDER BY c.gid), '{}') INTO fast
      FROM (SELECT (e ->> 'goal_id')::bigint AS gid, (e ->> 'epoch')::bigint AS ep, e -> 'steps' AS steps,
                   count(*) OVER (PARTITION BY (e ->> 'goal_id')::bigint) AS n
              FROM jsonb_array_elements(items) AS t(e)
             WHERE jsonb_typeof(e -> 'steps') = 'array' AND jsonb_array_length(e -> 'steps') > 0
               AND coalesce(e -> 'steps' -> 0 ->> 'kind', 'action') = 'action'
               AND NOT coalesce((e ->> 'replan')::boolean, false)
               AND (jsonb_typeof(e -> 'detail') IS DISTINCT FROM 'object'
                    OR NOT goalrt.json_too_deep(e -> 'detail'))) c
      JOIN goalrt.goals gl ON gl.id = c.gid
     WHERE c.n = 1 AND gl.plan_no = 0 AND goalrt.holds_lease(gl, worker_id, c.ep)
       -- Every step valid (a step the loop would refuse goes through it, which names it).
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c.steps) WITH ORDINALITY AS u(st, i)
                        WHERE goalrt.step_problem(st, format('plan for goal %s: steps[%s]', c.gid, i - 1)) IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM goalrt.limit_holders h WHERE h.goal_id = gl.id)
       AND NOT EXISTS (SELECT 1 FROM goalrt.limits l WHERE l.action = c.steps -> 0 ->> 'action')
       AND NOT EXISTS (SELECT 1 FROM goalrt.workers w
                        WHERE w.id = worker_id AND NOT (c.steps -> 0 ->> 'action') = ANY (w.actions));
    IF cardinality(fast) > 0 THEN
        INSERT INTO goalrt.goal_steps
               (goal_id, seq, plan_no, kind, action, args, label, max_attempts, status, attempts, started_at)
        SELECT (e ->> 'goal_id')::bigint, u.i::integer, 1, coalesce(u.st ->> 'kind', 'action'), u.st ->> 'action',
               coalesce(u.st -> 'args', '{}'), u.st ->> 'label', (u.st ->> 'max_attempts')::integer,
               CASE WHEN u.i = 1 THEN 'running' ELSE 'pending' END, CASE WHEN u.i = 1 THEN 1 ELSE 0 END,
               CASE WHEN u.i = 1 THEN now() END
          FROM jsonb_array_elements(items) AS t(e), jsonb_array_elements(e -> 'steps') WITH ORDINALITY AS u(st, i)
         WHERE (e ->> 'goal_id')::bigint = ANY (fast)
         ORDER BY 1, 2;
        UPDATE goalrt.goals gl
           SET plan_no = 1, step_seq = 1, updated_at = now(),
               lease_expires_at = greatest(gl.lease_expires_at, now() + make_interval(secs => lease_seconds))
         WHERE gl.id = ANY (fast);
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || (e ->> 'goal_id'), 'goal.planned',
               jsonb_strip_nulls(jsonb_build_object(
                   'goal_id', (e ->> 'goal_id')::bigint, 'plan_no', 1, 'first_seq', 1, 'steps', e -> 'steps',
                   'reason', e ->> 'reason', 'worker', worker_id, 'epoch', (e ->> 'epoch')::bigint,
                   'planner', CASE WHEN jsonb_typeof(e -> 'detail') = 'object' THEN e -> 'detail' END))
          FROM jsonb_array_elements(items) AS t(e)
         WHERE (e ->> 'goal_id')::bigint = ANY (fast)
         ORDER BY (e ->> 'goal_id')::bigint;
        RETURN QUERY
        SELECT (e ->> 'goal_id')::bigint, 'planned'::text, 1, e -> 'steps' -> 0 ->> 'action',
               coalesce(e -> 'steps' -> 0 -> 'args', '{}'), 1
          FROM jsonb_array_elements(items) AS t(e)
         WHERE (e ->> 'goal_id')::bigint = ANY (fast);
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, i)
              WHERE (e ->> 'goal_id') IS NULL OR NOT (e ->> 'goal_id')::bigint = ANY (fast)
              ORDER BY (e ->> 'goal_id')::bigint
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
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR NO KEY UPDATE;
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

COMMENT ON FUNCTION goalrt.plan_goals_v1(text, jsonb, double precision) IS
    'Store the plans (steps) a worker computed for goals whose leases it holds.';

-- The handler's traceback a step's failure item carries (its "traceback"),
-- as the part of the step.failed event that holds it ({} without one): text,
-- at most 16000 characters (the end is kept: the innermost frames).
CREATE FUNCTION goalrt.traceback_of(tb jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(tb) = 'string' AND tb #>> '{}' <> ''
                THEN jsonb_build_object('traceback', right(tb #>> '{}', 16000))
                ELSE '{}'::jsonb END
$$;

-- Record the outcome of steps run by a worker, each in its own right and
-- only while the worker still holds the goal's lease at that epoch. items is
-- a JSON array of
--   {"goal_id", "epoch", "seq", "outcome": "complete" | "retry" | "fail" | "replan",
--    "result", "changes" (a change set for goalrt.change_state), "events"
--    ([{"type", "data"}] appended to the goal's stream), "error",
--    "traceback" (retry, fail: the handler's, kept in step.failed),
--    "retry_in" (seconds), "continue" (start the next step at once),
--    "steps", "reason", "detail" (replan: the step failed for good and
--    these steps replace the rest of the plan)}
-- For each item it returns what happened:
--   'continue'        next step started under the same lease (step_seq, action, args, attempt)
--   'complete'        the goal completed
--   'waiting'         the goal waits (its next step is a wait), lease released
--   'blocked'         the next step's action is at a limit: the goal is parked, lease released
--   'retry'           the goal waits until its retry time, lease released
--   'failed'          the step and the goal failed
--   'released'        the next step is left for any worker (continue was false)
--   'already_applied' this exact outcome was applied before (a re-sent commit: a complete,
--                     or a retry, fail or replan of the same goal, epoch and seq by this worker)
--   'refused'         the lease was lost: nothing applied, step.result_refused recorded
--   'change_refused'  the state change was refused (error says why): nothing applied
CREATE FUNCTION goalrt.complete_steps_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (
    goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer, error text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    locked  bigint[];
    x       jsonb;
    g       goalrt.goals;
    s       goalrt.goal_steps;
    ep      bigint;
    sq      integer;
    nxt      goalrt.goal_steps;
    nseq     integer;
    stream   text;
    delay    double precision;
    ev_ids   bigint[];
    ev_types text[];
    paths    text[];
    fast     bigint[];
    nexts    integer[];
    ended    bigint[];
    -- A session that serves every tenant acts for each goal's tenant in turn
    -- (goalrt.acting_tenant, read by goalrt.current_tenant).
    star     boolean := goalrt.current_tenant() = '*';
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    -- Lock order (see the top of this file), for all items before the
    -- first is applied: the goals and their subtrees; the buckets of their
    -- slots and of the actions they may start next; the state paths they
    -- change (a new path by a placeholder row, version 0, removed below if
    -- unused); the event types they append.
    locked := goalrt.lock_goals(ARRAY(SELECT (e ->> 'goal_id')::bigint FROM jsonb_array_elements(items) AS t(e)));
    IF EXISTS (SELECT 1 FROM goalrt.limits) THEN  -- (no limit, no bucket to lock)
        PERFORM goalrt.lock_limits(
            locked,
            (SELECT jsonb_agg(q.st) FROM (
                SELECT f.st
                  FROM jsonb_array_elements(items) AS t(e),
                       LATERAL (SELECT jsonb_build_object('action', s0.action, 'args', s0.args) AS st
                                  FROM goalrt.goals g0
                                  JOIN goalrt.goal_steps s0 ON s0.goal_id = g0.id AND s0.plan_no = g0.plan_no
                                 WHERE e ->> 'outcome' = 'complete' AND g0.id = (e ->> 'goal_id')::bigint
                                   AND s0.seq > (e ->> 'seq')::integer AND s0.status = 'pending' AND s0.kind = 'action'
                                 ORDER BY s0.seq LIMIT 1) f
                UNION ALL
                SELECT f.st
                  FROM jsonb_array_elements(items) AS t(e),
                       LATERAL (SELECT st FROM jsonb_array_elements(CASE WHEN e ->> 'outcome' = 'replan'
                                                                          AND jsonb_typeof(e -> 'steps') = 'array'
                                                                         THEN e -> 'steps' ELSE '[]' END)
                                               WITH ORDINALITY AS u(st, i)
                                 WHERE coalesce(st ->> 'kind', 'action') = 'action' ORDER BY i LIMIT 1) f) q));
    END IF;
    paths := ARRAY(SELECT DISTINCT c ->> 'path'
                     FROM jsonb_array_elements(items) AS t(e),
                          jsonb_array_elements(CASE WHEN jsonb_typeof(e -> 'changes') = 'array'
                                                    THEN e -> 'changes' ELSE '[]' END) AS u(c)
                    WHERE jsonb_typeof(c -> 'path') = 'string' AND goalrt.valid_path(c ->> 'path'));
    IF cardinality(paths) > 0 AND NOT star THEN
        PERFORM set_config('goalrt.applying', 'on', true);
        INSERT INTO goalrt.state_data AS sd (path, value, version, inherited_pos)
        SELECT p, NULL, 0, 0 FROM unnest(paths) AS p ORDER BY p COLLATE "C"
        ON CONFLICT ON CONSTRAINT state_data_pkey DO UPDATE SET version = sd.version WHERE false;
        PERFORM set_config('goalrt.applying', 'off', true);
    ELSIF cardinality(paths) > 0 THEN
        -- Each path in the tenant of the goal whose item changes it.
        PERFORM set_config('goalrt.applying', 'on', true);
        INSERT INTO goalrt.state_data AS sd (path, value, version, inherited_pos, tenant)
        SELECT q.p, NULL, 0, 0, q.tn
          FROM (SELECT DISTINCT c ->> 'path' AS p, g0.tenant AS tn
                  FROM (SELECT e, (e ->> 'goal_id')::bigint AS gid, (e ->> 'seq')::integer AS sq
                        FROM jsonb_array_elements(items) AS t0(e) OFFSET 0) AS t
                  JOIN goalrt.goals g0 ON g0.id = t.gid,
                       jsonb_array_elements(CASE WHEN jsonb_typeof(e -> 'changes') = 'array'
                                                 THEN e -> 'changes' ELSE '[]' END) AS u(c)
                 WHERE jsonb_typeof(c -> 'path') = 'string' AND goalrt.valid_path(c ->> 'path')) q
         ORDER BY q.p COLLATE "C", q.tn
        ON CONFLICT ON CONSTRAINT state_data_pkey DO UPDATE SET version = sd.version WHERE false;
        PERFORM set_config('goalrt.applying', 'off', true);
    END IF;
    PERFORM pg_advisory_xact_lock_shared('goalrt.goal_waits'::regclass::oid::integer, k.k)
       FROM (SELECT DISTINCT goalrt.wait_lock_key(ty) AS k
               FROM (SELECT ev ->> 'type' AS ty
                       FROM jsonb_array_elements(items) AS t(e),
                            jsonb_array_elements(CASE WHEN jsonb_typeof(e -> 'events') = 'array'
                                                      THEN e -> 'events' ELSE '[]' END) AS u(ev)
                      WHERE jsonb_typeof(ev -> 'type') = 'string'
                     UNION ALL
                     SELECT 'state.changed' WHERE cardinality(paths) > 0) q
              ORDER BY 1) k;
    IF cardinality(paths) > 0 AND EXISTS (SELECT 1 FROM goalrt.gdl_policies) THEN
        PERFORM goalrt.lock_policies(paths);
    END IF;
    -- The common case, for the whole batch at once: a step completed under
    -- the lease with no state change, no event and no limit slot, whose goal
    -- then either completes (no parent, no unfinished child) or goes on to
    -- its next step, an action with no limit that this worker can run, under
    -- the same lease. What the loop below (and advance_goal, end_goal) would
    -- do for it, in a few statements for all such items; the rest go through
    -- the loop. fast: the items' goals; nexts: the step each goes on to
    -- (NULL: none); ended: those that complete.
    SELECT coalesce(array_agg(c.gid ORDER BY c.gid), '{}'), coalesce(array_agg(nx.seq ORDER BY c.gid), '{}'),
           coalesce(array_agg(c.gid ORDER BY c.gid) FILTER (WHERE nx.seq IS NULL), '{}')
      INTO fast, nexts, ended
      FROM (SELECT (e ->> 'goal_id')::bigint AS gid, (e ->> 'epoch')::bigint AS ep, (e ->> 'seq')::integer AS sq,
                   coalesce((e ->> 'continue')::boolean, false) AS cont,
                   count(*) OVER (PARTITION BY (e ->> 'goal_id')::bigint) AS n
              FROM jsonb_array_elements(items) AS t(e)
             WHERE e ->> 'outcome' = 'complete'
               AND (jsonb_typeof(e -> 'changes') IS DISTINCT FROM 'array' OR jsonb_array_length(e -> 'changes') = 0)
               AND (jsonb_typeof(e -> 'events') IS DISTINCT FROM 'array' OR jsonb_array_length(e -> 'events') = 0)
               AND NOT coalesce(goalrt.json_too_deep(e -> 'result'), false)) c
      JOIN goalrt.goals gl ON gl.id = c.gid
      JOIN goalrt.goal_steps cs ON cs.goal_id = gl.id AND cs.seq = c.sq
      LEFT JOIN LATERAL (SELECT n.seq, n.kind, n.action FROM goalrt.goal_steps n
                          WHERE n.goal_id = gl.id AND n.seq > c.sq AND n.status = 'pending' AND n.plan_no = gl.plan_no
                          ORDER BY n.seq LIMIT 1) nx ON true
     WHERE c.n = 1 AND goalrt.holds_lease(gl, worker_id, c.ep) AND gl.step_seq = c.sq AND cs.status = 'running'
       AND NOT EXISTS (SELECT 1 FROM goalrt.limit_holders h WHERE h.goal_id = gl.id)
       AND CASE WHEN nx.seq IS NULL
                THEN gl.parent_id IS NULL
                     AND NOT EXISTS (SELECT 1 FROM goalrt.goals k
                                      WHERE k.parent_id = gl.id AND k.status IN ('pending', 'active', 'waiting'))
                ELSE c.cont AND nx.kind = 'action'
                     AND NOT EXISTS (SELECT 1 FROM goalrt.limits l WHERE l.action = nx.action)
                     AND NOT EXISTS (SELECT 1 FROM goalrt.workers w
                                      WHERE w.id = worker_id AND NOT nx.action = ANY (w.actions)) END;
    IF cardinality(fast) > 0 THEN
        -- No step of a goal ending here starts once this commits (end_goal's start lock).
        PERFORM pg_advisory_xact_lock_shared('goalrt.goals'::regclass::oid::integer, (e.id & 2147483647)::integer)
           FROM unnest(ended) AS e(id) ORDER BY e.id;
        UPDATE goalrt.goal_steps st
           SET status = 'complete', result = e -> 'result', error = NULL, completed_epoch = (e ->> 'epoch')::bigint,
               finished_at = now()
          -- The keys read from JSON first (OFFSET 0 keeps them columns of
          -- their own): while tenancy is on, the policy on goals and
          -- goal_steps lets only leakproof conditions into an index scan;
          -- st.goal_id = (e ->> 'goal_id')::bigint is not one (->> and the
          -- cast may raise an error that shows a value), st.goal_id = t.gid
          -- is. Otherwise every tenant's steps would be read, or the items
          -- scanned once per step. The same below.
          FROM (SELECT e, (e ->> 'goal_id')::bigint AS gid, (e ->> 'seq')::integer AS sq
                  FROM jsonb_array_elements(items) AS t0(e) OFFSET 0) AS t
         WHERE t.gid = ANY (fast) AND st.goal_id = t.gid AND st.seq = t.sq;
        IF cardinality(ended) > 0 THEN
            -- As end_goal: any other open step of the plan is cancelled, waits dropped.
            UPDATE goalrt.goal_steps st SET status = 'cancelled', finished_at = now()
             WHERE st.goal_id = ANY (ended) AND st.status IN ('pending', 'running');
            DELETE FROM goalrt.goal_waits w WHERE w.goal_id = ANY (ended);
        END IF;
        -- The next step of each goal going on starts under the same lease (as advance_goal).
        WITH started AS (
            UPDATE goalrt.goal_steps st SET status = 'running', attempts = st.attempts + 1, started_at = now()
              FROM unnest(fast, nexts) AS f(gid, seq)
             WHERE f.seq IS NOT NULL AND st.goal_id = f.gid AND st.seq = f.seq
            RETURNING st.goal_id, st.seq
        )
        UPDATE goalrt.goals gl
           SET step_seq = started.seq, updated_at = now(),
               lease_expires_at = greatest(gl.lease_expires_at, now() + make_interval(secs => lease_seconds))
          FROM started
         WHERE gl.id = started.goal_id;
        UPDATE goalrt.goals gl
           SET status = 'complete', result = e -> 'result', last_error = NULL, step_seq = NULL, lease_owner = NULL,
               lease_expires_at = NULL, wake_at = NULL, blocked_on = NULL, updated_at = now(), finished_at = now()
          FROM (SELECT e, (e ->> 'goal_id')::bigint AS gid, (e ->> 'seq')::integer AS sq
                  FROM jsonb_array_elements(items) AS t0(e) OFFSET 0) AS t
         WHERE gl.id = ANY (ended) AND gl.id = t.gid;
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || q.gid, q.type, q.data
          FROM (SELECT (e ->> 'goal_id')::bigint AS gid, 1 AS o, 'step.completed' AS type,
                       jsonb_build_object('goal_id', (e ->> 'goal_id')::bigint, 'seq', (e ->> 'seq')::integer,
                                          'action', st.action, 'attempt', st.attempts,
                                          'epoch', (e ->> 'epoch')::bigint, 'worker', worker_id,
                                          'result', e -> 'result') AS data
                  FROM (SELECT e, (e ->> 'goal_id')::bigint AS gid, (e ->> 'seq')::integer AS sq
                        FROM jsonb_array_elements(items) AS t0(e) OFFSET 0) AS t
                  JOIN goalrt.goal_steps st ON st.goal_id = t.gid AND st.seq = t.sq
                 WHERE t.gid = ANY (fast) AND NOT t.gid = ANY (ended)
                UNION ALL
                -- The last step's completion is recorded by goal.completed (as end_goal's detail below).
                SELECT (e ->> 'goal_id')::bigint, 2, 'goal.completed',
                       jsonb_build_object('goal_id', (e ->> 'goal_id')::bigint, 'result', e -> 'result',
                                          'seq', (e ->> 'seq')::integer, 'action', st.action, 'attempt', st.attempts,
                                          'epoch', (e ->> 'epoch')::bigint, 'worker', worker_id)
                  FROM (SELECT e, (e ->> 'goal_id')::bigint AS gid, (e ->> 'seq')::integer AS sq
                        FROM jsonb_array_elements(items) AS t0(e) OFFSET 0) AS t
                  JOIN goalrt.goal_steps st ON st.goal_id = t.gid AND st.seq = t.sq
                 WHERE t.gid = ANY (ended)) q
         ORDER BY q.gid, q.o;
        RETURN QUERY
        SELECT (e ->> 'goal_id')::bigint,
               CASE WHEN (e ->> 'goal_id')::bigint = ANY (ended) THEN 'complete' ELSE 'continue' END,
               n.seq, n.action, n.args, n.attempts, NULL::text
          FROM (SELECT e, (e ->> 'goal_id')::bigint AS gid, (e ->> 'seq')::integer AS sq
                  FROM jsonb_array_elements(items) AS t0(e) OFFSET 0) AS t
          JOIN goalrt.goals gl ON gl.id = t.gid
          LEFT JOIN goalrt.goal_steps n ON n.goal_id = gl.id AND n.seq = gl.step_seq
         WHERE t.gid = ANY (fast);
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(items) AS t(e)
              WHERE (e ->> 'goal_id') IS NULL OR NOT (e ->> 'goal_id')::bigint = ANY (fast)
              ORDER BY (e ->> 'goal_id')::bigint LOOP
        goal_id := (x ->> 'goal_id')::bigint;
        ep := (x ->> 'epoch')::bigint;
        sq := (x ->> 'seq')::integer;
        IF star THEN
            -- Every tenant again first: the last item's tenant would hide this goal.
            PERFORM set_config('goalrt.acting_tenant', '', true);
            PERFORM set_config('goalrt.acting_tenant',
                               coalesce('=' || (SELECT g0.tenant FROM goalrt.goals g0 WHERE g0.id = goal_id), ''), true);
        END IF;
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
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR NO KEY UPDATE;
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
            nseq := goalrt.next_step(g.id, sq, g.plan_no);
            IF nseq IS NOT NULL THEN
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES (stream, 'step.completed',
                        jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                           'epoch', ep, 'worker', worker_id, 'result', x -> 'result'));
            END IF;
            PERFORM goalrt.release_limits(g.id);
            IF nseq IS NULL THEN
                -- The last step: goal.completed records its completion (one event, not two).
                PERFORM goalrt.end_goal(g.id, 'complete', x -> 'result', NULL,
                                        jsonb_build_object('seq', sq, 'action', s.action, 'attempt', s.attempts,
                                                           'epoch', ep, 'worker', worker_id));
                outcome := 'complete';
            ELSE
                outcome := goalrt.advance_goal(
                    g.id, nseq, CASE WHEN coalesce((x ->> 'continue')::boolean, false) THEN worker_id END,
                    lease_seconds, x -> 'result');
            END IF;
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
                                       'epoch', ep, 'worker', worker_id) || goalrt.traceback_of(x -> 'traceback'));
            outcome := 'retry';
        ELSE
            UPDATE goalrt.goal_steps st SET status = 'failed', error = x ->> 'error', finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'final', true, 'epoch', ep, 'worker', worker_id)
                    || goalrt.traceback_of(x -> 'traceback'));
            PERFORM goalrt.end_goal(g.id, 'failed', NULL, x ->> 'error', jsonb_build_object('seq', sq));
            outcome := 'failed';
        END IF;
        RETURN NEXT;
    END LOOP;
    IF star THEN
        PERFORM set_config('goalrt.acting_tenant', '', true);
    END IF;
    IF cardinality(paths) > 0 THEN
        -- Placeholders of paths that no change set wrote (its item was refused).
        PERFORM set_config('goalrt.applying', 'on', true);
        DELETE FROM goalrt.state_data sd WHERE sd.path = ANY (paths) AND sd.version = 0;
        PERFORM set_config('goalrt.applying', 'off', true);
    END IF;
END
$$;

COMMENT ON FUNCTION goalrt.complete_steps_v1(text, jsonb, double precision) IS
    'Apply step results (result, state changes, events, advance) only under a held lease; refuse and record others.';

-- Fail goals a worker holds before any step runs (invalid params, a plan
-- that cannot be made): [{"goal_id", "epoch", "error"}]. Returns the goals
-- failed; others (lease lost) are left alone.
CREATE FUNCTION goalrt.fail_goals_v1(worker_id text, items jsonb)
RETURNS TABLE (goal_id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    x jsonb;
    g goalrt.goals;
BEGIN
    -- Lock order (see the top of this file): the goals and their subtrees, then the buckets of their slots.
    PERFORM goalrt.lock_limits(
        goalrt.lock_goals(ARRAY(SELECT (e ->> 'goal_id')::bigint
                                  FROM jsonb_array_elements(coalesce(items, '[]')) AS t(e))), NULL);
    FOR x IN SELECT e FROM jsonb_array_elements(coalesce(items, '[]')) AS t(e) ORDER BY (e ->> 'goal_id')::bigint LOOP
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = (x ->> 'goal_id')::bigint FOR NO KEY UPDATE;
        goal_id := (x ->> 'goal_id')::bigint;
        IF NOT FOUND OR NOT goalrt.holds_lease(g, worker_id, (x ->> 'epoch')::bigint) THEN
            outcome := 'refused';
            RETURN NEXT;
            CONTINUE;
        END IF;
        PERFORM goalrt.end_goal(g.id, 'failed', NULL, x ->> 'error',
                                jsonb_build_object('worker', worker_id, 'epoch', g.lease_epoch));
        outcome := 'failed';
        RETURN NEXT;
    END LOOP;
END
$$;

-- Whether worker_id may start the handler of step seq of goal goal_id now:
-- the goal still runs that step under this worker's lease at that epoch
-- and no ancestor of it has ended. Asked with the goal's start lock held
-- (step_start_v1, step_start_v2).
CREATE FUNCTION goalrt.step_may_start(worker_id text, goal_id bigint, epoch bigint, seq integer) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM goalrt.goals g
                     JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
                    WHERE g.id = step_may_start.goal_id AND goalrt.holds_lease(g, worker_id, epoch)
                      AND g.step_seq = step_may_start.seq AND s.status = 'running')
       AND NOT EXISTS (WITH RECURSIVE up AS (
                           SELECT g.parent_id FROM goalrt.goals g WHERE g.id = step_may_start.goal_id
                           UNION ALL
                           SELECT a.parent_id FROM goalrt.goals a JOIN up ON a.id = up.parent_id)
                       SELECT 1 FROM goalrt.goals a JOIN up ON a.id = up.parent_id
                        WHERE a.status IN ('complete', 'failed', 'cancelled'))
$$;

-- Whether worker_id may start the handler of step seq of goal goal_id now.
-- A worker calls this just before it calls the handler, and
-- step_started_v1 once the handler has begun, on the same connection,
-- holding no other lock between the two. This takes the goal's start lock
-- (an advisory lock, exclusive, for the session) and then checks, with the
-- commits made meanwhile in view, step_may_start.
-- Ending a goal takes the same lock shared until its commit (end_goal), so
-- an end commits either before this check (false: the handler must not
-- start, and the lock is given back) or after the handler began.
CREATE FUNCTION goalrt.step_start_v1(worker_id text, goal_id bigint, epoch bigint, seq integer) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    PERFORM pg_advisory_lock('goalrt.goals'::regclass::oid::integer, (step_start_v1.goal_id & 2147483647)::integer);
    IF goalrt.step_may_start(worker_id, step_start_v1.goal_id, epoch, seq) THEN
        RETURN true;
    END IF;
    PERFORM pg_advisory_unlock('goalrt.goals'::regclass::oid::integer, (step_start_v1.goal_id & 2147483647)::integer);
    RETURN false;
END
$$;

COMMENT ON FUNCTION goalrt.step_start_v1(text, bigint, bigint, integer) IS
    'Take a goal''s start lock and say whether its step may start now (the goal still runs it under this lease).';

-- step_start_v1 for many steps in one call, never waiting: each goal's
-- start lock is tried (in goal id order) and outcome says 'start' (the lock
-- is now held by this session: start the handler, then step_started_v1),
-- 'refused' (the step may not start; no lock held) or 'busy' (another
-- transaction holds the lock, an end of the goal in progress: ask again
-- with step_start_v1, which waits for it, holding no other start lock).
-- A session that holds start locks therefore never waits for one, so it
-- cannot deadlock with ends.
CREATE FUNCTION goalrt.step_start_v2(worker_id text, goal_ids bigint[], epochs bigint[], seqs integer[])
RETURNS TABLE (goal_id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    ids  bigint[];
    eps  bigint[];
    sqs  integer[];
    got  boolean[];
    outs text[];
BEGIN
    -- First every lock is tried; then (a statement of its own, so with the
    -- commits made meanwhile in view) each step locked is checked; the
    -- locks of the steps that may not start are given back.
    SELECT array_agg(t.g ORDER BY t.g), array_agg(t.e ORDER BY t.g), array_agg(t.s ORDER BY t.g),
           array_agg(pg_try_advisory_lock('goalrt.goals'::regclass::oid::integer, (t.g & 2147483647)::integer)
                     ORDER BY t.g)
      INTO ids, eps, sqs, got
      FROM unnest(goal_ids, epochs, seqs) AS t(g, e, s);
    IF ids IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(CASE WHEN NOT t.locked THEN 'busy'
                          WHEN EXISTS (SELECT 1 FROM goalrt.goals g
                                         JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
                                        WHERE g.id = t.gid AND goalrt.holds_lease(g, worker_id, t.ep)
                                          AND g.step_seq = t.sq AND s.status = 'running'
                                          -- (the ancestors are looked at for a child goal only)
                                          AND (g.parent_id IS NULL
                                               OR goalrt.step_may_start(worker_id, t.gid, t.ep, t.sq)))
                          THEN 'start' ELSE 'refused' END ORDER BY t.n)
      INTO outs
      FROM unnest(ids, eps, sqs, got) WITH ORDINALITY AS t(gid, ep, sq, locked, n);
    PERFORM pg_advisory_unlock('goalrt.goals'::regclass::oid::integer, (t.g & 2147483647)::integer)
       FROM unnest(ids, outs) AS t(g, o)
      WHERE t.o = 'refused';
    RETURN QUERY SELECT t.g, t.o FROM unnest(ids, outs) AS t(g, o);
END
$$;

COMMENT ON FUNCTION goalrt.step_start_v2(text, bigint[], bigint[], integer[]) IS
    'step_start_v1 for many steps without waiting: start (lock held), refused, or busy (ask step_start_v1).';

-- The handler of goal goal_id's step has begun: give back its start lock.
CREATE FUNCTION goalrt.step_started_v1(goal_id bigint) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT pg_advisory_unlock('goalrt.goals'::regclass::oid::integer, (goal_id & 2147483647)::integer)
$$;

-- Record a running step's progress (ctx.progress): a fraction of the work
-- done (0..1) and a message (cut to 200 characters). Written only while
-- worker_id holds the goal's lease at `epoch` (holds_lease) and the step is
-- the goal's running step; returns whether it was written (false: the
-- lease was lost, e.g. a stale epoch after a takeover, or the step ended).
-- No event: progress is a hint, overwritten by the next report.
CREATE FUNCTION goalrt.step_progress_v1(
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

-- Extend the leases a worker still holds and refresh its heartbeat. Returns
-- the ids of the goals whose leases it holds (anything else it must stop).
CREATE FUNCTION goalrt.heartbeat_v1(
    worker_id text, goal_ids bigint[], epochs bigint[], lease_seconds double precision
) RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
BEGIN
    UPDATE goalrt.workers w SET last_seen = now(), db_role = session_user
     WHERE w.id = worker_id AND (w.db_role IS NULL OR w.db_role = session_user);
    -- Lock in id order, like every other function that locks many goals,
    -- so a heartbeat and the same worker's completions never deadlock.
    RETURN QUERY
    WITH held AS (
        SELECT g.id
          FROM goalrt.goals g
          JOIN unnest(goal_ids, epochs) AS h(id, epoch) ON g.id = h.id AND g.lease_epoch = h.epoch
         WHERE g.lease_owner = worker_id AND g.lease_role = session_user AND g.status = 'active' AND g.lease_expires_at > now()
         ORDER BY g.id
           FOR NO KEY UPDATE OF g
    )
    UPDATE goalrt.goals g
       SET lease_expires_at = now() + make_interval(secs => lease_seconds)
      FROM held
     WHERE g.id = held.id
    RETURNING g.id;
END
$$;

-- Give back leases a worker holds but will not finish (it is shutting
-- down): the goals become claimable at once, the interrupted step's
-- attempt does not count, and its limit slots are freed. Returns the goals
-- released.
CREATE FUNCTION goalrt.release_goals_v1(worker_id text, goal_ids bigint[], epochs bigint[])
RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    released bigint[];
BEGIN
    WITH held AS (
        SELECT g.id, g.step_seq
          FROM goalrt.goals g
          JOIN unnest(goal_ids, epochs) AS h(id, epoch) ON g.id = h.id AND g.lease_epoch = h.epoch
         WHERE g.lease_owner = worker_id AND g.lease_role = session_user AND g.status = 'active'
         ORDER BY g.id
           FOR NO KEY UPDATE OF g
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
        -- Lock order (see the top of this file): the buckets of their slots after the goals.
        PERFORM goalrt.lock_limits(released, NULL);
        PERFORM goalrt.release_limits(r) FROM unnest(released) AS r;
        PERFORM pg_notify('goalrt_goals', '');
        RETURN QUERY SELECT r FROM unnest(released) AS r;
    END IF;
END
$$;
