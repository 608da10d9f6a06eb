-- The log: no reader is shown a position that is not committed and durable,
-- and no transaction another role keeps open can hold the clock (issue 15,
-- items 1 and 4). Ticks commit synchronously and record their transaction,
-- readers skip their own transaction's uncommitted positions, and roles
-- other than the owner tick only through CALL goalrt.tick_commit(), which
-- commits at once. See docs/event-log.md.

ALTER TABLE goalrt.event_order ADD COLUMN tick_xid xid8;

CREATE OR REPLACE VIEW goalrt.events AS
SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at,
       o.prev_hash, o.hash
  FROM goalrt.event_order o
  JOIN goalrt.event_data e ON e.id = o.event_id
 WHERE NOT coalesce(o.tick_xid = pg_current_xact_id_if_assigned(), false);


CREATE FUNCTION goalrt.position_events(wait_ms integer) RETURNS bigint
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


COMMENT ON FUNCTION goalrt.position_events(integer) IS
    'The tick, for goalrt''s own functions: see goalrt.tick and goalrt.tick_commit.';


REVOKE ALL ON FUNCTION goalrt.position_events(integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION goalrt.tick(wait_ms integer DEFAULT 200) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    stack  text;
    caller text[];
BEGIN
    -- current_user is the owner here (SECURITY DEFINER); session_user is
    -- who logged in.
    IF pg_has_role(session_user, current_user, 'USAGE') THEN
        RETURN goalrt.position_events(wait_ms);
    END IF;
    GET DIAGNOSTICS stack = PG_CONTEXT;
    caller := regexp_match(stack,
        '^[^\n]*\n[^\n]*\s(?:([^\s.]+)\.)?tick_commit\(integer,bigint\)(?:\s[^\n]*)?$');
    IF caller IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_proc p
         WHERE p.proname = 'tick_commit'
           AND p.proowner <> (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)
           AND NOT pg_is_other_temp_schema(p.pronamespace)
           AND (caller[1] IS NULL OR p.pronamespace::regnamespace::text = caller[1])
    ) THEN
        RETURN goalrt.position_events(wait_ms);
    END IF;
    RETURN (SELECT c.head FROM goalrt.clock c);
END
$$;


COMMENT ON FUNCTION goalrt.tick(integer) IS
    'Assign positions to newly committed events (for the owner; others CALL goalrt.tick_commit); returns the head position.';


CREATE PROCEDURE goalrt.tick_commit(wait_ms integer DEFAULT 200, INOUT head bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    head := goalrt.tick(wait_ms);
    COMMIT;
END
$$;


COMMENT ON PROCEDURE goalrt.tick_commit(integer, bigint) IS
    'Tick the clock and commit at once (CALL it outside a transaction block); returns the head.';


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
        SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, o.prev_hash, o.hash
          FROM goalrt.event_order o
          JOIN goalrt.event_data e ON e.id = o.event_id
         WHERE o.pos > coalesce(after_pos, 0)
           AND (mine IS NULL OR o.tick_xid IS DISTINCT FROM mine)
         ORDER BY o.pos
         LIMIT max_count;
    ELSE
        RETURN QUERY EXECUTE format(
            'SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, o.prev_hash, o.hash
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
        -- Inside the caller's transaction: replay commits or rolls back as
        -- soon as it has copied the state (a writer's function).
        head := goalrt.position_events(greatest(wait_ms, 1) / 3 + 1);
        IF NOT EXISTS (SELECT 1 FROM goalrt.state_data s
                         LEFT JOIN goalrt.event_order o ON o.event_id = s.event_id
                        WHERE s.event_id IS NOT NULL AND (o.pos IS NULL OR o.pos > head)) THEN
            RETURN head;
        END IF;
    END LOOP;
    RAISE EXCEPTION 'the clock is busy: could not position every state change' USING ERRCODE = '55P03';
END
$$;


REVOKE ALL ON PROCEDURE goalrt.tick_commit(integer, bigint) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON PROCEDURE goalrt.tick_commit(integer, bigint) TO goalrt_reader, goalrt_writer, goalrt_admin;
END
$$;
