-- Policies hold under concurrency (issue 20 item 5): check_policies first locks the policy
-- instances the changed paths concern (lock_policies), so two writers of one instance take turns
-- and the second checks with the first's change in view; complete_steps_v1 locks those of all its
-- items at once (step 5 of the lock order).

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

CREATE OR REPLACE FUNCTION goalrt.lock_policies(paths text[]) RETURNS void
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

CREATE OR REPLACE FUNCTION goalrt.check_policies(paths text[]) RETURNS void
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

CREATE OR REPLACE FUNCTION goalrt.complete_steps_v1(worker_id text, items jsonb, lease_seconds double precision)
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

REVOKE ALL ON FUNCTION goalrt.policy_bindings(jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION goalrt.lock_policies(text[]) FROM PUBLIC;
