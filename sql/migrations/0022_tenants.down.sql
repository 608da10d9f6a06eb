-- Undo 0022: no tenants. Refused (a duplicate key) when two tenants hold the same state path or idempotency key.
-- The triggers exist while a role is mapped to '*', row-level security is on while one is mapped to a tenant.
DROP TRIGGER IF EXISTS event_data_tenant ON goalrt.event_data;
DROP TRIGGER IF EXISTS goals_tenant ON goalrt.goals;
DROP TRIGGER IF EXISTS goal_steps_tenant ON goalrt.goal_steps;
DROP TRIGGER IF EXISTS goal_waits_tenant ON goalrt.goal_waits;
DROP TRIGGER IF EXISTS wait_rechecks_tenant ON goalrt.wait_rechecks;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['goals', 'goal_steps', 'goal_waits', 'wait_rechecks', 'state_data',
                             'event_data', 'event_order', 'snapshot_entries'] LOOP
        EXECUTE format('DROP POLICY tenant_rows ON goalrt.%I', t);
        EXECUTE format('ALTER TABLE goalrt.%I NO FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE goalrt.%I DISABLE ROW LEVEL SECURITY', t);
    END LOOP;
END
$$;

ALTER VIEW goalrt.events RESET (security_invoker);
ALTER VIEW goalrt.state RESET (security_invoker);

DROP FUNCTION goalrt.fold_changes(bigint, bigint, text);
CREATE FUNCTION goalrt.fold_changes(after_pos bigint, to_pos bigint, path_regex text DEFAULT NULL)
RETURNS TABLE (path text, reset boolean, reset_value jsonb, inc numeric, changes bigint, last_pos bigint)
LANGUAGE sql STABLE AS $$
    WITH ch AS (
        SELECT o.pos, c.x ->> 'op' AS op, c.x ->> 'path' AS path, c.x -> 'value' AS value,
               (c.x -> 'by')::numeric AS amount
          FROM goalrt.event_order o
          JOIN goalrt.event_data e ON e.id = o.event_id
         CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(e.data -> 'changes') AS c(x)
         WHERE o.pos > after_pos AND o.pos <= to_pos AND e.type = 'state.changed'
           AND (path_regex IS NULL OR (c.x ->> 'path') OPERATOR(pg_catalog.~) path_regex)
    ), ranked AS (
        -- resets_after: how many sets/deletes of this path come at or after this change
        SELECT ch.*, count(*) FILTER (WHERE ch.op <> 'inc')
                     OVER (PARTITION BY ch.path ORDER BY ch.pos DESC ROWS UNBOUNDED PRECEDING) AS resets_after
          FROM ch
    )
    SELECT r.path,
           bool_or(r.op <> 'inc'),
           (pg_catalog.array_agg(r.value) FILTER (WHERE r.op <> 'inc' AND r.resets_after = 1))[1],
           sum(r.amount) FILTER (WHERE r.op = 'inc' AND r.resets_after = 0),
           count(*),
           max(r.pos)
      FROM ranked r
     GROUP BY r.path
$$;

REVOKE ALL ON FUNCTION goalrt.fold_changes(bigint, bigint, text) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION goalrt.fold_changes(bigint, bigint, text)
        TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.read_events(
    after_pos bigint DEFAULT 0, max_count integer DEFAULT 1000,
    stream_name text DEFAULT NULL, type_pattern text DEFAULT NULL,
    advance boolean DEFAULT true
) RETURNS SETOF goalrt.events
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    mine xid8;
BEGIN
    IF max_count IS NULL OR max_count < 1 THEN
        RAISE EXCEPTION 'max_count must be a positive integer' USING ERRCODE = '22023';
    END IF;
    -- Only the owner's sessions tick here: anyone else's read could be held
    -- open (a long statement, a client that does not fetch) with the clock.
    IF advance AND pg_has_role(session_user, current_user, 'USAGE') THEN
        PERFORM goalrt.position_events(200);
    END IF;
    -- The positions this transaction assigned (its own tick's, uncommitted)
    -- are visible to it: leave them out.
    mine := pg_current_xact_id_if_assigned();
    -- Unfiltered (the hot path of every follower): a static query walking
    -- event_order's primary key. With filters, the query is planned for the
    -- actual values: a cached generic plan over "x IS NULL OR ..." once
    -- chose a scan of all of event_data.
    IF stream_name IS NULL AND type_pattern IS NULL THEN
        RETURN QUERY
        SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, o.prev_hash, o.hash,
               e.db_role
          FROM goalrt.event_order o
          JOIN goalrt.event_data e ON e.id = o.event_id
         WHERE o.pos > coalesce(after_pos, 0)
           AND (mine IS NULL OR o.tick_xid IS DISTINCT FROM mine)
         ORDER BY o.pos
         LIMIT max_count;
    ELSE
        RETURN QUERY EXECUTE format(
            'SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, o.prev_hash, o.hash,
                    e.db_role
               FROM goalrt.event_order o
               JOIN goalrt.event_data e ON e.id = o.event_id
              WHERE o.pos > $1 %s %s %s
              ORDER BY o.pos
              LIMIT $2',
            CASE WHEN stream_name IS NOT NULL THEN 'AND e.stream = $3' ELSE '' END,
            CASE WHEN type_pattern IS NOT NULL THEN 'AND e.type LIKE goalrt.glob_to_like($4)' ELSE '' END,
            CASE WHEN mine IS NOT NULL THEN 'AND o.tick_xid IS DISTINCT FROM $5' ELSE '' END)
        USING coalesce(after_pos, 0), max_count, stream_name, type_pattern, mine;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.position_events(wait_ms integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
-- work_mem: a large batch is sorted by id; keep that sort in memory.
SET search_path = pg_catalog, goalrt, pg_temp SET work_mem = '64MB' AS $$
DECLARE
    c          goalrt.clock;
    cur        pg_snapshot;
    saved      text;
    r          record;
    p          bigint;
    h          bytea;
    new_pos    bigint[] := '{}';
    new_ids    bigint[] := '{}';
    new_prev   bytea[]  := '{}';
    new_hash   bytea[]  := '{}';
    new_time   timestamptz[] := '{}';
    t          timestamptz;
    tracked    boolean;
BEGIN
    SELECT * INTO c FROM goalrt.clock;
    IF current_setting('transaction_isolation') <> 'read committed'
       OR current_setting('transaction_read_only') = 'on'
       OR pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RETURN c.head;
    END IF;

    -- Cheap, lock-free check first: idle readers polling the log must not
    -- write (a write costs a WAL flush at commit).
    cur := pg_current_snapshot();
    IF NOT EXISTS (
        SELECT 1 FROM goalrt.event_data e
         WHERE e.xid >= pg_snapshot_xmax(c.snapshot) AND e.xid < pg_snapshot_xmax(cur)
           AND pg_visible_in_snapshot(e.xid, cur)
        UNION ALL
        SELECT 1 FROM goalrt.event_data e
         WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(c.snapshot)))
           AND pg_visible_in_snapshot(e.xid, cur)
    ) THEN
        RETURN c.head;
    END IF;

    saved := current_setting('lock_timeout');
    PERFORM set_config('lock_timeout', greatest(wait_ms, 1) || 'ms', true);
    BEGIN
        PERFORM pg_advisory_xact_lock('goalrt.clock'::regclass::oid::integer, 1);
    EXCEPTION WHEN lock_not_available THEN
        PERFORM set_config('lock_timeout', saved, true);
        RETURN (SELECT head FROM goalrt.clock);
    END;
    PERFORM set_config('lock_timeout', saved, true);

    -- Under the lock, with a fresh statement snapshot: the previous ticker
    -- has committed (it releases the lock only after its commit is visible).
    SELECT * INTO c FROM goalrt.clock;
    cur := pg_current_snapshot();
    p := c.head;
    h := c.head_hash;
    t := coalesce((SELECT o.log_time FROM goalrt.event_order o WHERE o.pos = c.head), '-infinity');
    -- With track_commit_timestamp on, an event's time is its transaction's
    -- commit time (exact for time travel); otherwise the time it was recorded.
    tracked := current_setting('track_commit_timestamp') = 'on';

    -- The batch: transactions visible in cur and not visible in the previous
    -- snapshot. A transaction id below the previous xmax is invisible to it
    -- exactly when it is listed in its xip, so the two halves below cover the
    -- batch without rescanning old rows, even behind a long transaction.
    FOR r IN
        SELECT b.id, b.recorded_at, b.xid,
               goalrt.event_digest(b.id, b.stream, b.type, b.data, b.metadata, b.recorded_at, b.db_role) AS digest
          FROM (SELECT e.id, e.xid, e.stream, e.type, e.data, e.metadata, e.recorded_at, e.db_role
                  FROM goalrt.event_data e
                 WHERE e.xid >= pg_snapshot_xmax(c.snapshot) AND e.xid < pg_snapshot_xmax(cur)
                   AND pg_visible_in_snapshot(e.xid, cur)
                UNION ALL
                SELECT e.id, e.xid, e.stream, e.type, e.data, e.metadata, e.recorded_at, e.db_role
                  FROM goalrt.event_data e
                 WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(c.snapshot)))
                   AND pg_visible_in_snapshot(e.xid, cur)) b
         ORDER BY b.id
    LOOP
        -- the body of goalrt.chain_hash, inline: a function call per event
        -- costs more than the hash
        p := p + 1;
        new_pos  := new_pos  || p;
        new_ids  := new_ids  || r.id;
        new_prev := new_prev || h;
        h := sha256(h || int8send(p) || r.digest);
        new_hash := new_hash || h;
        t := greatest(t, CASE WHEN tracked THEN coalesce(pg_xact_commit_timestamp(xid(r.xid)), r.recorded_at)
                              ELSE r.recorded_at END);
        new_time := new_time || t;
    END LOOP;

    IF p = c.head THEN
        RETURN p;
    END IF;

    -- Not a SET clause: that would be undone when the function returns,
    -- before the commit it is for. SET LOCAL lasts to the transaction's end.
    -- (remote_write and stronger already flush locally; only off is raised.)
    IF current_setting('synchronous_commit') = 'off' THEN
        SET LOCAL synchronous_commit = on;
    END IF;
    INSERT INTO goalrt.event_order (pos, event_id, prev_hash, hash, log_time, tick_xid)
    SELECT *, pg_current_xact_id() FROM unnest(new_pos, new_ids, new_prev, new_hash, new_time);
    UPDATE goalrt.clock
       SET snapshot = cur, head = p, head_hash = h, ticks = clock.ticks + 1, ticked_at = now();
    -- One notification per tick, never per event; delivered after commit.
    PERFORM pg_notify('goalrt_events', p::text);
    RETURN p;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.snapshot_locked(at_pos bigint, snap_name text, snap_tags text[], snap_note text)
RETURNS goalrt.snapshots
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    prev    goalrt.snapshots;
    delta   bigint := 0;
    n       bigint := 0;
    result  goalrt.snapshots;
BEGIN
    SELECT * INTO prev FROM goalrt.snapshots ORDER BY pos DESC, id DESC LIMIT 1;
    IF prev.pos > at_pos THEN
        RAISE EXCEPTION 'snapshots are taken in log order: one exists at position %, after %', prev.pos, at_pos
            USING ERRCODE = 'GR005';
    END IF;
    IF at_pos > coalesce(prev.pos, goalrt.base_pos()) THEN
        PERFORM set_config('goalrt.applying', 'on', true);
        -- Every sub-statement sees the entries as they were before this
        -- statement, so closing the old entries and adding the new ones
        -- cannot see each other's rows.
        WITH f AS MATERIALIZED (
            SELECT * FROM goalrt.fold_changes(coalesce(prev.pos, goalrt.base_pos()), at_pos)
        ), old AS MATERIALIZED (
            SELECT e.path, e.value, e.version
              FROM goalrt.snapshot_entries e JOIN f ON e.path = f.path
             WHERE e.valid_to IS NULL
        ), closed AS (
            UPDATE goalrt.snapshot_entries e SET valid_to = at_pos
              FROM old WHERE e.path = old.path AND e.valid_to IS NULL
        ), added AS (
            INSERT INTO goalrt.snapshot_entries (path, valid_from, valid_to, value, version, pos)
            SELECT f.path, at_pos, NULL, goalrt.fold_value(o.value, f.reset, f.reset_value, f.inc),
                   coalesce(o.version, 0) + f.changes, f.last_pos
              FROM f LEFT JOIN old o ON o.path = f.path
            RETURNING path, value
        )
        SELECT coalesce(sum(CASE WHEN a.value IS NOT NULL THEN 1 ELSE 0 END
                          - CASE WHEN o.value IS NOT NULL THEN 1 ELSE 0 END), 0),
               count(*)
          INTO delta, n
          FROM added a LEFT JOIN old o ON o.path = a.path;
        PERFORM set_config('goalrt.applying', 'off', true);
    END IF;
    INSERT INTO goalrt.snapshots (pos, name, auto, tags, note, paths, written)
    VALUES (at_pos, snap_name, snap_name IS NULL, coalesce(snap_tags, '{}'), snap_note,
            CASE WHEN prev.id IS NULL
                 THEN (SELECT count(*) FROM goalrt.snapshot_entries WHERE valid_to IS NULL AND value IS NOT NULL)
                 ELSE prev.paths + delta END, n)
    RETURNING * INTO result;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.state_fold(at_pos bigint, pattern text DEFAULT NULL, use_snapshots boolean DEFAULT true)
RETURNS TABLE (path text, value jsonb, version bigint, pos bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    snap   bigint;
    regex  text;
    prefix text;
BEGIN
    PERFORM goalrt.check_pos(at_pos);
    IF pattern IS NOT NULL THEN
        regex := goalrt.path_pattern_regex(pattern);
        prefix := goalrt.path_pattern_prefix(pattern);
    END IF;
    IF use_snapshots THEN
        SELECT max(s.pos) INTO snap FROM goalrt.snapshots s WHERE s.pos <= at_pos;
    ELSIF goalrt.base_pos() > 0 THEN
        snap := goalrt.base_pos();   -- a fork's log starts from its base snapshot
    END IF;
    -- The snapshot's entries: all of them by the interval index, or one
    -- prefix's by the path index (a query covering both cases was planned
    -- for neither).
    RETURN QUERY EXECUTE format(
        'WITH base AS (
             SELECT e.path, e.value, e.version, e.pos
               FROM goalrt.snapshot_entries e
              WHERE %s
         ), f AS (
             SELECT * FROM goalrt.fold_changes($4, $5, $3)
         )
         SELECT coalesce(f.path, b.path)::text,
                CASE WHEN f.path IS NULL THEN b.value
                     ELSE goalrt.fold_value(b.value, f.reset, f.reset_value, f.inc) END,
                coalesce(b.version, 0) + coalesce(f.changes, 0),
                coalesce(f.last_pos, b.pos)
           FROM base b FULL JOIN f ON f.path = b.path',
        CASE WHEN snap IS NULL THEN 'false'
             WHEN prefix IS NULL THEN 'int8range(e.valid_from, e.valid_to) @> $1 AND ($3 IS NULL OR e.path ~ $3)'
             ELSE 'e.path >= $2 COLLATE "C" AND e.path < ($2 || ''/'') COLLATE "C"
                   AND e.valid_from <= $1 AND (e.valid_to IS NULL OR e.valid_to > $1) AND e.path ~ $3'
        END)
    USING snap, prefix, regex, coalesce(snap, goalrt.base_pos()), at_pos;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.state_history(path text)
RETURNS TABLE (pos bigint, op text, value jsonb, deleted boolean, version bigint, recorded_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    r     record;
    cur   jsonb;
    ver   bigint := 0;
    start bigint := goalrt.base_pos();
BEGIN
    IF NOT goalrt.valid_path(state_history.path) THEN
        RAISE EXCEPTION 'invalid path %: use dot-separated segments of letters, digits, _ - : @',
            coalesce(quote_literal(state_history.path), 'NULL') USING ERRCODE = 'GR003';
    END IF;
    IF start > 0 THEN
        SELECT e.value, e.version INTO cur, ver
          FROM goalrt.snapshot_entries e
         WHERE e.path = state_history.path AND int8range(e.valid_from, e.valid_to) @> start;
        ver := coalesce(ver, 0);
        IF ver > 0 THEN
            pos := start; op := 'base'; value := cur; deleted := cur IS NULL; version := ver;
            recorded_at := NULL;
            RETURN NEXT;
        END IF;
    END IF;
    FOR r IN
        SELECT o.pos, c.x ->> 'op' AS op, c.x -> 'value' AS v, (c.x -> 'by')::numeric AS amount, e.recorded_at
          FROM goalrt.event_data e
          JOIN goalrt.event_order o ON o.event_id = e.id
         CROSS JOIN LATERAL jsonb_array_elements(e.data -> 'changes') AS c(x)
         WHERE e.type = 'state.changed'
           AND (e.data -> 'changes') @> jsonb_build_array(jsonb_build_object('path', state_history.path))
           AND c.x ->> 'path' = state_history.path
           AND o.pos > start
         ORDER BY o.pos
    LOOP
        cur := CASE r.op WHEN 'set' THEN r.v WHEN 'delete' THEN NULL
                         ELSE to_jsonb(coalesce(cur::numeric, 0) + r.amount) END;
        ver := ver + 1;
        pos := r.pos; op := r.op; value := cur; deleted := cur IS NULL; version := ver;
        recorded_at := r.recorded_at;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.change_state(changes jsonb, stream text DEFAULT 'state', metadata jsonb DEFAULT '{}')
RETURNS TABLE (event_id bigint, path text, version bigint, value jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
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
    IF goalrt.json_too_deep(metadata) THEN
        PERFORM goalrt.json_depth_error('metadata', metadata);
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
    PERFORM goalrt.json_depth_error(format('changes[%s].value', i - 1), x -> 'value')
       FROM jsonb_array_elements(changes) WITH ORDINALITY AS t(x, i)
      WHERE goalrt.json_too_deep(x -> 'value');

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
    -- Goals watching these paths (maintained goals) may resume.
    PERFORM goalrt.match_appended(ARRAY['state.changed'], ARRAY[new_id]);

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
    -- GDL policies see the state with the change applied; a broken one aborts it all.
    IF EXISTS (SELECT 1 FROM goalrt.gdl_policies) THEN
        PERFORM goalrt.check_policies(ARRAY(SELECT x ->> 'path' FROM jsonb_array_elements(changes) AS t(x)));
    END IF;
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
     WHERE k NOT IN ('priority', 'run_at', 'delay', 'key', 'parent_id', 'partition_key', 'deadline');
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION '%options.% is not an option (priority, run_at, delay, key, parent_id, partition_key, deadline)',
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
                                   wake_at, deadline_at)
    VALUES (submit_one.name, coalesce(params, '{}'), coalesce(prio, 0), start_at, gkey, parent,
            o ->> 'partition_key', CASE WHEN start_at > now() THEN start_at END, deadline)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
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
    IF cardinality(paths) > 0 THEN
        PERFORM set_config('goalrt.applying', 'on', true);
        INSERT INTO goalrt.state_data AS sd (path, value, version, inherited_pos)
        SELECT p, NULL, 0, 0 FROM unnest(paths) AS p ORDER BY p COLLATE "C"
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
          FROM jsonb_array_elements(items) AS t(e)
         WHERE (e ->> 'goal_id')::bigint = ANY (fast)
           AND st.goal_id = (e ->> 'goal_id')::bigint AND st.seq = (e ->> 'seq')::integer;
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
          FROM jsonb_array_elements(items) AS t(e)
         WHERE gl.id = ANY (ended) AND gl.id = (e ->> 'goal_id')::bigint;
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || q.gid, q.type, q.data
          FROM (SELECT (e ->> 'goal_id')::bigint AS gid, 1 AS o, 'step.completed' AS type,
                       jsonb_build_object('goal_id', (e ->> 'goal_id')::bigint, 'seq', (e ->> 'seq')::integer,
                                          'action', st.action, 'attempt', st.attempts,
                                          'epoch', (e ->> 'epoch')::bigint, 'worker', worker_id,
                                          'result', e -> 'result') AS data
                  FROM jsonb_array_elements(items) AS t(e)
                  JOIN goalrt.goal_steps st ON st.goal_id = (e ->> 'goal_id')::bigint
                                           AND st.seq = (e ->> 'seq')::integer
                 WHERE (e ->> 'goal_id')::bigint = ANY (fast) AND NOT (e ->> 'goal_id')::bigint = ANY (ended)
                UNION ALL
                -- The last step's completion is recorded by goal.completed (as end_goal's detail below).
                SELECT (e ->> 'goal_id')::bigint, 2, 'goal.completed',
                       jsonb_build_object('goal_id', (e ->> 'goal_id')::bigint, 'result', e -> 'result',
                                          'seq', (e ->> 'seq')::integer, 'action', st.action, 'attempt', st.attempts,
                                          'epoch', (e ->> 'epoch')::bigint, 'worker', worker_id)
                  FROM jsonb_array_elements(items) AS t(e)
                  JOIN goalrt.goal_steps st ON st.goal_id = (e ->> 'goal_id')::bigint
                                           AND st.seq = (e ->> 'seq')::integer
                 WHERE (e ->> 'goal_id')::bigint = ANY (ended)) q
         ORDER BY q.gid, q.o;
        RETURN QUERY
        SELECT (e ->> 'goal_id')::bigint,
               CASE WHEN (e ->> 'goal_id')::bigint = ANY (ended) THEN 'complete' ELSE 'continue' END,
               n.seq, n.action, n.args, n.attempts, NULL::text
          FROM jsonb_array_elements(items) AS t(e)
          JOIN goalrt.goals gl ON gl.id = (e ->> 'goal_id')::bigint
          LEFT JOIN goalrt.goal_steps n ON n.goal_id = gl.id AND n.seq = gl.step_seq
         WHERE (e ->> 'goal_id')::bigint = ANY (fast);
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(items) AS t(e)
              WHERE (e ->> 'goal_id') IS NULL OR NOT (e ->> 'goal_id')::bigint = ANY (fast)
              ORDER BY (e ->> 'goal_id')::bigint LOOP
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
    IF cardinality(paths) > 0 THEN
        -- Placeholders of paths that no change set wrote (its item was refused).
        PERFORM set_config('goalrt.applying', 'on', true);
        DELETE FROM goalrt.state_data sd WHERE sd.path = ANY (paths) AND sd.version = 0;
        PERFORM set_config('goalrt.applying', 'off', true);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.match_appended(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    k    integer;
    m    record;
    free boolean;
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
            -- The goal is not waited for (lock order): one another transaction
            -- holds is looked at again once it is free, and finds this event then.
            PERFORM 1 FROM goalrt.goals g WHERE g.id = m.goal_id FOR NO KEY UPDATE SKIP LOCKED;
            free := FOUND;
        END IF;
        IF m.counts AND NOT free THEN
            PERFORM goalrt.recheck_later(m.goal_id);
        ELSIF m.counts THEN
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

CREATE OR REPLACE FUNCTION goalrt.wait_look_back(p_type text, alts jsonb, p_since bigint, OUT hit jsonb, OUT settled boolean)
LANGUAGE plpgsql AS $$
DECLARE
    snap      pg_snapshot;
    since_pos bigint;
    ev        record;
BEGIN
    settled := pg_try_advisory_xact_lock('goalrt.goal_waits'::regclass::oid::integer, goalrt.wait_lock_key(p_type));
    IF settled THEN
        -- A lock out of the order (35_workers.sql): this transaction waits for no bucket any more.
        PERFORM set_config('goalrt.late_locks', 'on', true);
    END IF;
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

DROP INDEX goalrt.goals_idempotency_key_idx;
CREATE UNIQUE INDEX goals_idempotency_key_idx ON goalrt.goals (idempotency_key) WHERE idempotency_key IS NOT NULL;
ALTER TABLE goalrt.state_data DROP CONSTRAINT state_data_pkey;
ALTER TABLE goalrt.state_data DROP COLUMN tenant;
ALTER TABLE goalrt.state_data ADD CONSTRAINT state_data_pkey PRIMARY KEY (path);
ALTER TABLE goalrt.event_data DROP COLUMN tenant;
ALTER TABLE goalrt.event_order DROP COLUMN tenant;
ALTER TABLE goalrt.snapshot_entries DROP COLUMN tenant;
ALTER TABLE goalrt.goals DROP COLUMN tenant;
ALTER TABLE goalrt.goal_steps DROP COLUMN tenant;
ALTER TABLE goalrt.goal_waits DROP COLUMN tenant;
ALTER TABLE goalrt.wait_rechecks DROP COLUMN tenant;

DROP FUNCTION goalrt.sync_tenant_security();
DROP FUNCTION goalrt.goal_row_tenant();
DROP FUNCTION goalrt.drop_tenant_role(text);
DROP FUNCTION goalrt.set_tenant_role(text, text);
DROP FUNCTION goalrt.current_tenant();
DROP TABLE goalrt.tenant_roles;
