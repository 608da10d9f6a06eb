-- Every event records the login role that appended it (10_log.sql):
-- event_data.db_role defaults to session_user and no goalrt function gives it,
-- so the default always applies. Events appended before this migration keep
-- NULL: the column is added without a default first (a default given in ADD
-- COLUMN would be stored for every existing row as the migrating role), so
-- the column may be NULL.
-- event_digest takes the role as its last argument; concat_ws skips NULLs,
-- so the old events' digests, and so the whole chain, are unchanged.
-- goalrt.events and read_events show the role as their last column.

ALTER TABLE goalrt.event_data ADD COLUMN db_role text;
ALTER TABLE goalrt.event_data ALTER COLUMN db_role SET DEFAULT session_user;
COMMENT ON COLUMN goalrt.event_data.db_role IS
    'The login role (session_user) of the session that appended the event, set by the column default; NULL before migration 0016.';

CREATE OR REPLACE VIEW goalrt.events AS
SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at,
       o.prev_hash, o.hash, e.db_role
  FROM goalrt.event_order o
  JOIN goalrt.event_data e ON e.id = o.event_id
 WHERE NOT coalesce(o.tick_xid = pg_current_xact_id_if_assigned(), false);

DROP FUNCTION goalrt.event_digest(bigint, text, text, jsonb, jsonb, timestamptz);

CREATE FUNCTION goalrt.event_digest(
    id bigint, stream text, type text, data jsonb, metadata jsonb, recorded_at timestamptz, db_role text
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws(E'\x1f',
        id, pg_catalog.length(stream), stream, pg_catalog.length(type), type,
        data::text, metadata::text, (EXTRACT(epoch FROM recorded_at) * 1000000)::bigint,
        pg_catalog.length(db_role), db_role), 'UTF8'))
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

CREATE OR REPLACE FUNCTION goalrt.verify_chain()
RETURNS TABLE (ok boolean, checked bigint, first_bad_pos bigint, problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    c goalrt.clock;
    genesis bytea;
BEGIN
    SELECT * INTO c FROM goalrt.clock;
    genesis := c.base_hash;
    RETURN QUERY
    WITH chain AS (
        SELECT o.pos, o.prev_hash, o.hash,
               lag(o.pos)  OVER w AS before_pos,
               lag(o.hash) OVER w AS before_hash,
               goalrt.chain_hash(o.prev_hash, o.pos,
                                 goalrt.event_digest(e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at,
                                                     e.db_role))
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
                 WHEN pos <> coalesce(before_pos, c.base_pos) + 1 THEN 'position(s) missing before this one'
                 WHEN prev_hash <> coalesce(before_hash, genesis) THEN 'prev_hash does not match the previous event'
                 ELSE 'content does not match its hash'
               END AS why
          FROM chain
         WHERE missing
            OR pos <> coalesce(before_pos, c.base_pos) + 1
            OR prev_hash <> coalesce(before_hash, genesis)
            OR recomputed IS DISTINCT FROM hash
         ORDER BY pos
         LIMIT 1
    ), tail AS (
        SELECT (SELECT count(*) FROM chain) AS n,
               (SELECT max(pos) FROM chain) AS last_pos,
               (SELECT hash FROM chain ORDER BY pos DESC LIMIT 1) AS last_hash
    )
    SELECT b.pos IS NULL AND t.n = c.head - c.base_pos AND coalesce(t.last_hash, genesis) = c.head_hash,
           t.n,
           coalesce(b.pos, CASE WHEN t.n <> c.head - c.base_pos OR coalesce(t.last_hash, genesis) <> c.head_hash
                                THEN coalesce(t.last_pos, c.base_pos) + 1 END),
           coalesce(b.why, CASE WHEN t.n <> c.head - c.base_pos THEN 'the log ends before the clock head ' || c.head
                                WHEN coalesce(t.last_hash, genesis) <> c.head_hash
                                THEN 'the last hash does not match the clock' END)
      FROM tail t LEFT JOIN bad b ON true;
END
$$;

REVOKE ALL ON FUNCTION goalrt.event_digest(bigint, text, text, jsonb, jsonb, timestamptz, text) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION goalrt.event_digest(bigint, text, text, jsonb, jsonb, timestamptz, text)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
END
$$;
