-- Back to 0005's log.

CREATE OR REPLACE FUNCTION goalrt.state_freeze(wait_ms integer DEFAULT 500) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    head  bigint;
    saved text := current_setting('lock_timeout');
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'goalrt.state_freeze() needs a READ COMMITTED transaction' USING ERRCODE = '25000';
    END IF;
    PERFORM set_config('lock_timeout', greatest(wait_ms, 1) || 'ms', true);
    LOCK TABLE goalrt.state_data IN SHARE MODE;
    PERFORM set_config('lock_timeout', saved, true);
    FOR attempt IN 1 .. 3 LOOP
        head := goalrt.tick(greatest(wait_ms, 1) / 3 + 1);
        IF NOT EXISTS (SELECT 1 FROM goalrt.state_data s
                         LEFT JOIN goalrt.event_order o ON o.event_id = s.event_id
                        WHERE s.event_id IS NOT NULL AND (o.pos IS NULL OR o.pos > head)) THEN
            RETURN head;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'the clock is busy: could not position every state change' USING ERRCODE = '55P03';
END
$$;


CREATE OR REPLACE FUNCTION goalrt.read_events(
    after_pos bigint DEFAULT 0, max_count integer DEFAULT 1000,
    stream_name text DEFAULT NULL, type_pattern text DEFAULT NULL,
    advance boolean DEFAULT true
) RETURNS SETOF goalrt.events
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    IF max_count IS NULL OR max_count < 1 THEN
        RAISE EXCEPTION 'max_count must be a positive integer' USING ERRCODE = '22023';
    END IF;
    IF advance THEN
        PERFORM goalrt.tick();
    END IF;
    -- Unfiltered (the hot path of every follower): a static query walking
    -- event_order's primary key. With filters, the query is planned for the
    -- actual values: a cached generic plan over "x IS NULL OR ..." once
    -- chose a scan of all of event_data.
    IF stream_name IS NULL AND type_pattern IS NULL THEN
        RETURN QUERY
        SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, o.prev_hash, o.hash
          FROM goalrt.event_order o
          JOIN goalrt.event_data e ON e.id = o.event_id
         WHERE o.pos > coalesce(after_pos, 0)
         ORDER BY o.pos
         LIMIT max_count;
    ELSE
        RETURN QUERY EXECUTE format(
            'SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, o.prev_hash, o.hash
               FROM goalrt.event_order o
               JOIN goalrt.event_data e ON e.id = o.event_id
              WHERE o.pos > $1 %s %s
              ORDER BY o.pos
              LIMIT $2',
            CASE WHEN stream_name IS NOT NULL THEN 'AND e.stream = $3' ELSE '' END,
            CASE WHEN type_pattern IS NOT NULL THEN 'AND e.type LIKE goalrt.glob_to_like($4)' ELSE '' END)
        USING coalesce(after_pos, 0), max_count, stream_name, type_pattern;
    END IF;
END
$$;


DROP PROCEDURE goalrt.tick_commit(integer, bigint);

CREATE OR REPLACE FUNCTION goalrt.tick(wait_ms integer DEFAULT 200) RETURNS bigint
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
               goalrt.event_digest(b.id, b.stream, b.type, b.data, b.metadata, b.recorded_at) AS digest
          FROM (SELECT e.id, e.xid, e.stream, e.type, e.data, e.metadata, e.recorded_at
                  FROM goalrt.event_data e
                 WHERE e.xid >= pg_snapshot_xmax(c.snapshot) AND e.xid < pg_snapshot_xmax(cur)
                   AND pg_visible_in_snapshot(e.xid, cur)
                UNION ALL
                SELECT e.id, e.xid, e.stream, e.type, e.data, e.metadata, e.recorded_at
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

    INSERT INTO goalrt.event_order (pos, event_id, prev_hash, hash, log_time)
    SELECT * FROM unnest(new_pos, new_ids, new_prev, new_hash, new_time);
    UPDATE goalrt.clock
       SET snapshot = cur, head = p, head_hash = h, ticks = clock.ticks + 1, ticked_at = now();
    -- One notification per tick, never per event; delivered after commit.
    PERFORM pg_notify('goalrt_events', p::text);
    RETURN p;
END
$$;


COMMENT ON FUNCTION goalrt.tick(integer) IS
    'Assign positions to newly committed events; returns the head position.';


DROP FUNCTION goalrt.position_events(integer);

CREATE OR REPLACE VIEW goalrt.events AS
SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at,
       o.prev_hash, o.hash
  FROM goalrt.event_order o
  JOIN goalrt.event_data e ON e.id = o.event_id;


ALTER TABLE goalrt.event_order DROP COLUMN tick_xid;
