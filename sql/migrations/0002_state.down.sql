-- goalrt migration 0002 (down): remove state, snapshots and forks.
--
-- Forks' schemas (goalrt_fork_*) are dropped with the registry. The
-- state.changed events stay in the log: events are never removed.

DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT schema_name FROM goalrt.forks LOOP
        EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', f.schema_name);
    END LOOP;
END
$$;

DROP TABLE goalrt.forks;
DROP FUNCTION goalrt.state_freeze(integer);
DROP FUNCTION goalrt.state_history(text);
DROP FUNCTION goalrt.state_at_time(timestamptz, text);
DROP FUNCTION goalrt.pos_at(timestamptz);
DROP FUNCTION goalrt.state_at(bigint, text);
DROP FUNCTION goalrt.state_fold(bigint, text, boolean);
DROP FUNCTION goalrt.create_snapshot(text, text[], text);
DROP FUNCTION goalrt.auto_snapshot(bigint);
DROP FUNCTION goalrt.snapshot_locked(bigint, text, text[], text);
DROP FUNCTION goalrt.check_pos(bigint);
DROP FUNCTION goalrt.base_pos();
DROP TABLE goalrt.snapshot_entries;
DROP TABLE goalrt.snapshots;
DROP FUNCTION goalrt.fold_changes(bigint, bigint, text);
DROP FUNCTION goalrt.fold_value(jsonb, boolean, jsonb, numeric);
DROP FUNCTION goalrt.change_state(jsonb, text, jsonb);
DROP VIEW goalrt.state;
DROP TABLE goalrt.state_data;
DROP FUNCTION goalrt.refuse_direct_write();
DROP INDEX goalrt.event_data_state_paths_idx;
DROP FUNCTION goalrt.path_pattern_prefix(text);
DROP FUNCTION goalrt.path_pattern_regex(text);
DROP FUNCTION goalrt.valid_path(text);
DROP TABLE goalrt.settings;

ALTER TABLE goalrt.event_order DROP COLUMN log_time;
ALTER TABLE goalrt.clock DROP COLUMN base_pos, DROP COLUMN base_hash;

ALTER FUNCTION goalrt.read_events(bigint, integer, text, text, boolean)
    SET search_path = pg_catalog, goalrt;

-- The functions as revision 0001 defined them.

CREATE OR REPLACE FUNCTION goalrt.append_event(
    stream text, type text, data jsonb DEFAULT '{}', metadata jsonb DEFAULT '{}'
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt AS $$
DECLARE
    new_id bigint;
BEGIN
    IF stream IS NULL OR stream = '' THEN
        RAISE EXCEPTION 'event stream must be a non-empty string' USING ERRCODE = 'GR002';
    END IF;
    IF type IS NULL OR type = '' THEN
        RAISE EXCEPTION 'event type must be a non-empty string' USING ERRCODE = 'GR002';
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
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt AS $$
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
             WHEN x ? 'metadata' AND jsonb_typeof(x -> 'metadata') NOT IN ('object', 'null')
               THEN '.metadata must be a JSON object'
           END AS problem
      INTO bad
      FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i)
     WHERE jsonb_typeof(x) <> 'object'
        OR jsonb_typeof(x -> 'stream') IS DISTINCT FROM 'string' OR x ->> 'stream' = ''
        OR jsonb_typeof(x -> 'type') IS DISTINCT FROM 'string' OR x ->> 'type' = ''
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

CREATE OR REPLACE FUNCTION goalrt.tick(wait_ms integer DEFAULT 200) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
-- work_mem: a large batch is sorted by id; keep that sort in memory.
SET search_path = pg_catalog, goalrt SET work_mem = '64MB' AS $$
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

    -- The batch: transactions visible in cur and not visible in the previous
    -- snapshot. A transaction id below the previous xmax is invisible to it
    -- exactly when it is listed in its xip, so the two halves below cover the
    -- batch without rescanning old rows, even behind a long transaction.
    FOR r IN
        SELECT b.id, goalrt.event_digest(b.id, b.stream, b.type, b.data, b.metadata, b.recorded_at) AS digest
          FROM (SELECT e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at
                  FROM goalrt.event_data e
                 WHERE e.xid >= pg_snapshot_xmax(c.snapshot) AND e.xid < pg_snapshot_xmax(cur)
                   AND pg_visible_in_snapshot(e.xid, cur)
                UNION ALL
                SELECT e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at
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
    END LOOP;

    IF p = c.head THEN
        RETURN p;
    END IF;

    INSERT INTO goalrt.event_order (pos, event_id, prev_hash, hash)
    SELECT * FROM unnest(new_pos, new_ids, new_prev, new_hash);
    UPDATE goalrt.clock
       SET snapshot = cur, head = p, head_hash = h, ticks = clock.ticks + 1, ticked_at = now();
    -- One notification per tick, never per event; delivered after commit.
    PERFORM pg_notify('goalrt_events', p::text);
    RETURN p;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.verify_chain()
RETURNS TABLE (ok boolean, checked bigint, first_bad_pos bigint, problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt AS $$
DECLARE
    c goalrt.clock;
    genesis CONSTANT bytea := decode(repeat('00', 32), 'hex');
BEGIN
    SELECT * INTO c FROM goalrt.clock;
    RETURN QUERY
    WITH chain AS (
        SELECT o.pos, o.prev_hash, o.hash,
               lag(o.pos)  OVER w AS before_pos,
               lag(o.hash) OVER w AS before_hash,
               goalrt.chain_hash(o.prev_hash, o.pos,
                                 goalrt.event_digest(e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at))
                   AS recomputed,
               e.id IS NULL AS missing
          FROM goalrt.event_order o
          LEFT JOIN goalrt.event_data e ON e.id = o.event_id
         WHERE o.pos <= c.head
        WINDOW w AS (ORDER BY o.pos)
    ), bad AS (
        SELECT pos,
               CASE
                 WHEN missing THEN 'event row is missing'
                 WHEN pos <> coalesce(before_pos, 0) + 1 THEN 'position(s) missing before this one'
                 WHEN prev_hash <> coalesce(before_hash, genesis) THEN 'prev_hash does not match the previous event'
                 ELSE 'content does not match its hash'
               END AS why
          FROM chain
         WHERE missing
            OR pos <> coalesce(before_pos, 0) + 1
            OR prev_hash <> coalesce(before_hash, genesis)
            OR recomputed IS DISTINCT FROM hash
         ORDER BY pos
         LIMIT 1
    ), tail AS (
        SELECT (SELECT count(*) FROM chain) AS n,
               (SELECT max(pos) FROM chain) AS last_pos,
               (SELECT hash FROM chain ORDER BY pos DESC LIMIT 1) AS last_hash
    )
    SELECT b.pos IS NULL AND t.n = c.head AND coalesce(t.last_hash, genesis) = c.head_hash,
           t.n,
           coalesce(b.pos, CASE WHEN t.n <> c.head OR coalesce(t.last_hash, genesis) <> c.head_hash
                                THEN coalesce(t.last_pos, 0) + 1 END),
           coalesce(b.why, CASE WHEN t.n <> c.head THEN 'the log ends before the clock head ' || c.head
                                WHEN coalesce(t.last_hash, genesis) <> c.head_hash
                                THEN 'the last hash does not match the clock' END)
      FROM tail t LEFT JOIN bad b ON true;
END
$$;
