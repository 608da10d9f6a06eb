-- Undo 0017: the functions as 0016 left them, no role columns, and the
-- privileges goalrt_writer had. goalrt_app and goalrt_worker lose what 0017
-- granted them; as cluster-wide roles they are not dropped.
CREATE OR REPLACE FUNCTION goalrt.register_goal_type(name text, params_schema jsonb DEFAULT '{}') RETURNS void
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
    IF goalrt.json_too_deep(params_schema) THEN
        PERFORM goalrt.json_depth_error('params_schema', params_schema);
    END IF;
    INSERT INTO goalrt.goal_types AS t (name, params_schema)
    VALUES (register_goal_type.name, register_goal_type.params_schema)
    ON CONFLICT ON CONSTRAINT goal_types_pkey DO UPDATE
       SET params_schema = excluded.params_schema, registered_at = now()
     WHERE t.params_schema IS DISTINCT FROM excluded.params_schema;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.holds_lease(g goalrt.goals, worker_id text, epoch bigint) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT coalesce(g.status = 'active' AND g.lease_owner = worker_id AND g.lease_epoch = epoch
                    AND g.lease_expires_at > now(), false)
$$;

CREATE OR REPLACE FUNCTION goalrt.lease_lost_reason(g goalrt.goals, worker_id text, epoch bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT CASE
             WHEN g.status <> 'active' THEN 'goal is ' || g.status
             WHEN g.lease_epoch <> epoch THEN format('lease epoch %s was superseded by epoch %s', epoch, g.lease_epoch)
             WHEN g.lease_owner IS DISTINCT FROM worker_id THEN 'lease was released'
             ELSE 'lease expired at ' || g.lease_expires_at
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

CREATE OR REPLACE FUNCTION goalrt.register_worker_v2(
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
                                     partition_count)
    VALUES (worker_id, register_worker_v2.name, register_worker_v2.hostname, register_worker_v2.pid,
            register_worker_v2.concurrency, coalesce(register_worker_v2.goal_types, '{}'),
            coalesce(register_worker_v2.actions, '{}'), register_worker_v2.partitions,
            register_worker_v2.partition_count)
    ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE
       SET name = excluded.name, hostname = excluded.hostname, pid = excluded.pid,
           concurrency = excluded.concurrency, goal_types = excluded.goal_types, actions = excluded.actions,
           partitions = excluded.partitions, partition_count = excluded.partition_count,
           started_at = now(), last_seen = now();
END
$$;

CREATE OR REPLACE FUNCTION goalrt.deregister_worker_v1(worker_id text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    DELETE FROM goalrt.workers w WHERE w.id = worker_id;
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
           FOR NO KEY UPDATE OF g
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

CREATE OR REPLACE FUNCTION goalrt.load_gdl(workspace text, content_hash text, definitions jsonb, runtime jsonb)
RETURNS TABLE (version bigint, created boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    cur   goalrt.gdl_versions;
    v     bigint;
    item  jsonb;
BEGIN
    IF workspace IS NULL OR workspace = '' THEN
        RAISE EXCEPTION 'workspace must be a non-empty name' USING ERRCODE = 'GR008';
    END IF;
    IF content_hash IS NULL OR content_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'content_hash must be a sha256 in hex' USING ERRCODE = 'GR008';
    END IF;
    IF jsonb_typeof(definitions) IS DISTINCT FROM 'object' OR jsonb_typeof(runtime) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'definitions and runtime must be JSON objects' USING ERRCODE = 'GR008';
    END IF;
    -- One load at a time.
    PERFORM pg_advisory_xact_lock('goalrt.gdl_versions'::regclass::oid::integer, 0);
    SELECT * INTO cur FROM goalrt.gdl_versions g ORDER BY g.version DESC LIMIT 1;
    IF FOUND AND cur.content_hash = load_gdl.content_hash AND cur.workspace = load_gdl.workspace THEN
        RETURN QUERY SELECT cur.version, false;
        RETURN;
    END IF;
    INSERT INTO goalrt.gdl_versions AS g (workspace, content_hash, definitions)
    VALUES (load_gdl.workspace, load_gdl.content_hash,
            load_gdl.definitions || jsonb_build_object('runtime', load_gdl.runtime))
    RETURNING g.version INTO v;

    FOR item IN SELECT jsonb_array_elements(coalesce(runtime -> 'goal_types', '[]')) LOOP
        PERFORM goalrt.register_goal_type(item ->> 'name', item -> 'params_schema');
        UPDATE goalrt.goal_types t SET defaults = coalesce(item -> 'defaults', '{}') WHERE t.name = item ->> 'name';
    END LOOP;

    DELETE FROM goalrt.gdl_policies;
    INSERT INTO goalrt.gdl_policies (name, app, version, condition, text, wildcards, reads)
    SELECT x ->> 'name', x ->> 'app', v, x -> 'condition', x ->> 'text', coalesce(x -> 'wildcards', '{}'), x -> 'reads'
      FROM jsonb_array_elements(coalesce(runtime -> 'policies', '[]')) AS t(x);

    DELETE FROM goalrt.gdl_triggers;
    INSERT INTO goalrt.gdl_triggers (event_type, goal_name, version, params)
    SELECT x ->> 'event_type', x ->> 'goal_name', v, x -> 'params'
      FROM jsonb_array_elements(coalesce(runtime -> 'triggers', '[]')) AS t(x);

    IF cur.version IS NOT NULL THEN
        PERFORM goalrt.drop_limit(o ->> 'action', coalesce(o -> 'options' ->> 'key', ''))
           FROM jsonb_array_elements(coalesce(cur.definitions -> 'runtime' -> 'limits', '[]')) AS t(o)
          WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(runtime -> 'limits', '[]')) AS n(x)
                             WHERE n.x ->> 'action' = o ->> 'action');
    END IF;
    PERFORM goalrt.set_limit(x ->> 'action', x -> 'options')
       FROM jsonb_array_elements(coalesce(runtime -> 'limits', '[]')) AS t(x);

    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('gdl', 'gdl.loaded', jsonb_build_object('version', v, 'workspace', workspace,
                                                      'content_hash', content_hash,
                                                      'previous', cur.version));
    PERFORM pg_notify('goalrt_gdl', v::text);
    RETURN QUERY SELECT v, true;
END
$$;

DROP FUNCTION goalrt.caller_is_admin();
ALTER TABLE goalrt.workers DROP COLUMN db_role;
ALTER TABLE goalrt.goals DROP COLUMN lease_role;
ALTER TABLE goalrt.goal_types DROP COLUMN gdl_version;

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['goalrt_app', 'goalrt_worker'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA goalrt FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA goalrt FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL PROCEDURES IN SCHEMA goalrt FROM %I', r);
            EXECUTE format('REVOKE ALL ON SCHEMA goalrt FROM %I', r);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'goalrt_writer')
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'goalrt_admin') THEN
        -- In the order 0016 had them (writer, then admin).
        REVOKE EXECUTE ON FUNCTION goalrt.set_limit(text, jsonb), goalrt.drop_limit(text, text),
                                   goalrt.create_snapshot(text, text[], text)
            FROM goalrt_admin;
        GRANT EXECUTE ON FUNCTION goalrt.set_limit(text, jsonb), goalrt.drop_limit(text, text),
                                  goalrt.create_snapshot(text, text[], text)
            TO goalrt_writer, goalrt_admin;
    END IF;
END
$$;
