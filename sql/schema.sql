-- goalrt: the canonical schema, as of the newest migration.
--
-- This file is the truth about the database. The alembic revisions under
-- migrations/ apply the files in sql/migrations/ in order; a test builds one
-- database from this file and one from the migrations and asserts that their
-- catalogs are identical.
--
-- Error codes raised by goalrt functions (class GR, mirrored in
-- goalrt/errors.py):
--   GR001  append-only table: UPDATE, DELETE or TRUNCATE refused
--   GR002  invalid event (empty stream or type, bad metadata, bad batch,
--          a reserved type)
--   GR003  invalid state change, path, pattern or snapshot name
--   GR004  state version conflict (an expect_version did not match)
--   GR005  position out of range (before the log's start or after its head)
--   GR006  direct write to a table that only goalrt's functions may write
--   GR007  invalid goal transition (e.g. cancelling a finished goal)
--   GR008  invalid goal submission or worker call (unknown goal type, bad
--          params or options)
--   GR009  goal not found

CREATE SCHEMA IF NOT EXISTS goalrt;

-- pgvector is optional: used where the server has it, never required.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        CREATE EXTENSION IF NOT EXISTS vector;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'goalrt: pgvector is available but this role may not create it; continuing without it';
END
$$;

-------------------------------------------------------------------------------
-- The event log
--
-- Appenders insert into event_data only. Each row records the top-level
-- transaction id that wrote it. A "tick" (goalrt.tick) later gives every
-- committed row a gapless position in event_order, in one canonical order:
-- the batch of a tick is the set of events whose transaction is visible in
-- the tick's snapshot and was not visible in the previous tick's snapshot
-- (PgQ's technique), ordered by id inside the batch. Readers only ever see
-- positioned events, so `WHERE pos > N ORDER BY pos` can never skip an event
-- whose transaction committed late.
-------------------------------------------------------------------------------

CREATE TABLE goalrt.event_data (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Top-level transaction id (not the subtransaction's): the unit that
    -- commits or aborts, and what pg_snapshot visibility is defined over.
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream      text        NOT NULL CHECK (stream <> '' AND length(stream) <= 512),
    type        text        NOT NULL CHECK (type <> '' AND length(type) <= 512),
    data        jsonb       NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX event_data_xid_idx ON goalrt.event_data (xid);
CREATE INDEX event_data_stream_idx ON goalrt.event_data (stream, id);

COMMENT ON TABLE goalrt.event_data IS
    'Payload of every appended event. Append-only; read it through goalrt.events.';

CREATE TABLE goalrt.event_order (
    pos       bigint PRIMARY KEY,
    -- No foreign key: only tick() writes here, from rows it has just read,
    -- and verify_chain() reports a missing event row. (The FK check cost
    -- more than the rest of the insert.)
    event_id  bigint NOT NULL UNIQUE,
    prev_hash bytea  NOT NULL,
    hash      bytea  NOT NULL,
    -- The running maximum of the events' times up to this position (commit
    -- time with track_commit_timestamp on, else recorded_at): never
    -- decreases, so goalrt.pos_at(time) is a binary search.
    log_time  timestamptz NOT NULL
);

COMMENT ON TABLE goalrt.event_order IS
    'The global clock: a gapless position and hash-chain link for every committed event. Written only by goalrt.tick().';

-- The single row of the clock: the snapshot of the last tick that positioned
-- events, the last position handed out and its hash. base_pos/base_hash are
-- where the log starts: 0 and zeros, or in a fork the fork point.
CREATE TABLE goalrt.clock (
    id        boolean     PRIMARY KEY DEFAULT true CHECK (id),
    snapshot  pg_snapshot NOT NULL,
    head      bigint      NOT NULL,
    head_hash bytea       NOT NULL,
    ticks     bigint      NOT NULL,
    ticked_at timestamptz NOT NULL,
    base_pos  bigint      NOT NULL DEFAULT 0,
    base_hash bytea       NOT NULL DEFAULT decode(repeat('00', 32), 'hex')
);
INSERT INTO goalrt.clock (snapshot, head, head_hash, ticks, ticked_at)
VALUES (pg_current_snapshot(), 0, decode(repeat('00', 32), 'hex'), 0, now());

COMMENT ON TABLE goalrt.clock IS
    'One row: where the global clock stands (head = last assigned pos).';

CREATE VIEW goalrt.events AS
SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at,
       o.prev_hash, o.hash
  FROM goalrt.event_order o
  JOIN goalrt.event_data e ON e.id = o.event_id;

COMMENT ON VIEW goalrt.events IS
    'Every committed event with its position, in canonical order by pos. `WHERE pos > N ORDER BY pos` is gap-free.';

-------------------------------------------------------------------------------
-- Append-only enforcement
-------------------------------------------------------------------------------

CREATE FUNCTION goalrt.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'goalrt.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'GR001';
END
$$;

CREATE TRIGGER event_data_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON goalrt.event_data
    FOR EACH STATEMENT EXECUTE FUNCTION goalrt.refuse_change();
CREATE TRIGGER event_order_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON goalrt.event_order
    FOR EACH STATEMENT EXECUTE FUNCTION goalrt.refuse_change();
CREATE TRIGGER clock_no_delete
    BEFORE DELETE OR TRUNCATE ON goalrt.clock
    FOR EACH STATEMENT EXECUTE FUNCTION goalrt.refuse_change();

-------------------------------------------------------------------------------
-- Hash chain
-------------------------------------------------------------------------------

-- The digest of one event's content: sha256 of its fields joined by the unit
-- separator (U+001F). Stream and type carry their length, so no value can pose
-- as a boundary; JSON text never holds a raw U+001F (it is escaped), and
-- jsonb's text form is deterministic (key order, spacing). The time is integer
-- microseconds since the epoch, so the session's TimeZone cannot change it.
-- STABLE, not IMMUTABLE, because concat_ws is: a SQL function is inlined
-- into the calling query only when its body is no more volatile than it
-- claims, and an inlined digest costs a third of a called one.
CREATE FUNCTION goalrt.event_digest(
    id bigint, stream text, type text, data jsonb, metadata jsonb, recorded_at timestamptz
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws(E'\x1f',
        id, pg_catalog.length(stream), stream, pg_catalog.length(type), type,
        data::text, metadata::text, (EXTRACT(epoch FROM recorded_at) * 1000000)::bigint), 'UTF8'))
$$;

-- One link of the chain: sha256(prev_hash || pos as 8 big-endian bytes ||
-- digest). Each hash covers its predecessor and its position, so changing,
-- removing or reordering any event breaks every hash after it.
CREATE FUNCTION goalrt.chain_hash(prev_hash bytea, pos bigint, digest bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.sha256(prev_hash || pg_catalog.int8send(pos) || digest)
$$;

-------------------------------------------------------------------------------
-- Appending
-------------------------------------------------------------------------------

CREATE FUNCTION goalrt.append_event(
    stream text, type text, data jsonb DEFAULT '{}', metadata jsonb DEFAULT '{}'
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    IF stream IS NULL OR stream = '' THEN
        RAISE EXCEPTION 'event stream must be a non-empty string' USING ERRCODE = 'GR002';
    END IF;
    IF type IS NULL OR type = '' THEN
        RAISE EXCEPTION 'event type must be a non-empty string' USING ERRCODE = 'GR002';
    END IF;
    IF type = 'state.changed' THEN
        RAISE EXCEPTION 'event type state.changed is reserved: change state with goalrt.change_state'
            USING ERRCODE = 'GR002';
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

COMMENT ON FUNCTION goalrt.append_event(text, text, jsonb, jsonb) IS
    'Append one event; returns its id. Its pos is assigned by the next tick after commit.';

-- Append many events in one call. `events` is a JSON array of objects
-- {"stream": ..., "type": ..., "data": ..., "metadata": ...}; ids are
-- returned in the order of the array, which is also their order in the log.
CREATE FUNCTION goalrt.append_events(events jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
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
             WHEN x ->> 'type' = 'state.changed'
               THEN '.type state.changed is reserved: change state with goalrt.change_state'
             WHEN x ? 'metadata' AND jsonb_typeof(x -> 'metadata') NOT IN ('object', 'null')
               THEN '.metadata must be a JSON object'
           END AS problem
      INTO bad
      FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i)
     WHERE jsonb_typeof(x) <> 'object'
        OR jsonb_typeof(x -> 'stream') IS DISTINCT FROM 'string' OR x ->> 'stream' = ''
        OR jsonb_typeof(x -> 'type') IS DISTINCT FROM 'string' OR x ->> 'type' = ''
        OR x ->> 'type' = 'state.changed'
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

COMMENT ON FUNCTION goalrt.append_events(jsonb) IS
    'Append a JSON array of events atomically; returns their ids in array order.';

-------------------------------------------------------------------------------
-- The clock
-------------------------------------------------------------------------------

-- Give positions to every event committed since the last tick and return the
-- head (the last assigned pos). Safe to call from any number of sessions at
-- once: ticks are serialised by a transaction-level advisory lock, and a
-- caller that cannot get it within wait_ms returns the current head instead
-- of waiting behind a long transaction.
--
-- A tick needs a fresh snapshot per statement, so it does nothing (and just
-- returns the head) in a REPEATABLE READ or SERIALIZABLE transaction, and in
-- a transaction that has already written (its own uncommitted events must
-- never be positioned). It cannot write in a READ ONLY transaction or on a
-- standby either; there too it returns the head, so reads keep working.
CREATE FUNCTION goalrt.tick(wait_ms integer DEFAULT 200) RETURNS bigint
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

-------------------------------------------------------------------------------
-- Reading
-------------------------------------------------------------------------------

-- Turn a glob ("order.*") into a LIKE pattern, escaping LIKE's own specials.
CREATE FUNCTION goalrt.glob_to_like(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pattern, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%'), '?', '_')
$$;

-- Events after a position, in pos order. With advance (the default) it
-- first ticks the clock, so a reader needs no background ticker and sees
-- everything committed before the call. A tick holds the clock's lock until
-- the caller's transaction ends: inside a long explicit transaction pass
-- advance => false (or read goalrt.events directly).
CREATE FUNCTION goalrt.read_events(
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

COMMENT ON FUNCTION goalrt.read_events(bigint, integer, text, text, boolean) IS
    'Events with pos > after_pos in pos order (at most max_count), optionally filtered by stream and type glob.';

-- Check the hash chain from the first position (after base_pos) to the
-- head. Returns one row: ok, the number of events checked, and (when broken)
-- the first bad position and why.
CREATE FUNCTION goalrt.verify_chain()
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

COMMENT ON FUNCTION goalrt.verify_chain() IS
    'Recompute the hash chain over the whole log; names the first bad position if it is broken.';

-------------------------------------------------------------------------------
-- Settings
-------------------------------------------------------------------------------

CREATE TABLE goalrt.settings (
    key   text  PRIMARY KEY,
    value jsonb NOT NULL,
    CHECK (key <> 'snapshot_every'
           OR (jsonb_typeof(value) = 'number' AND (value #>> '{}') ~ '^[0-9]{1,18}$'))
);
INSERT INTO goalrt.settings (key, value) VALUES ('snapshot_every', '1000');

COMMENT ON TABLE goalrt.settings IS
    'Tunables. snapshot_every: positions between automatic state snapshots (0 turns them off).';

-------------------------------------------------------------------------------
-- State
--
-- The state is a set of paths (orders.o1.status) holding JSON values. It is
-- never written directly: goalrt.change_state records each change set as one
-- `state.changed` event and applies it to state_data in the same
-- transaction. state_data is therefore the fold of the log, and
-- goalrt.state_at() computes the same fold for any past position.
--
-- A deleted path keeps its row with value NULL (a tombstone), so its version
-- keeps counting and an expected version can never match a deleted-then-
-- recreated path by accident. A JSON null is a value ('null'), not a delete.
-------------------------------------------------------------------------------

-- Segments of letters, digits and _ - : @, joined by dots.
CREATE FUNCTION goalrt.valid_path(path text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT path IS NOT NULL AND pg_catalog.length(path) <= 512
       AND path OPERATOR(pg_catalog.~) '^[A-Za-z0-9_:@-]+(\.[A-Za-z0-9_:@-]+)*$'
$$;

-- A path pattern selects paths for reads:
--   orders.o1          the path itself and every path beneath it
--   orders.*.status    `*` is exactly one segment
--   orders.o1.*        a trailing `*` is one or more segments
-- Returns the anchored regular expression, or raises GR003 for a bad pattern.
CREATE FUNCTION goalrt.path_pattern_regex(pattern text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    segs text[];
    out  text[] := '{}';
    n    integer;
BEGIN
    IF pattern IS NULL OR pattern = '' OR length(pattern) > 512
       OR pattern !~ '^([A-Za-z0-9_:@-]+|\*)(\.([A-Za-z0-9_:@-]+|\*))*$' THEN
        RAISE EXCEPTION 'invalid path pattern %: use dot-separated segments of letters, digits, _ - : @, or *',
            coalesce(quote_literal(pattern), 'NULL') USING ERRCODE = 'GR003';
    END IF;
    segs := string_to_array(pattern, '.');
    n := array_length(segs, 1);
    IF NOT ('*' = ANY (segs)) THEN
        RETURN '^' || array_to_string(segs, '\.') || '(\..+)?$';
    END IF;
    FOR i IN 1 .. n LOOP
        out := out || CASE WHEN segs[i] <> '*' THEN segs[i]
                           WHEN i < n THEN '[^.]+'
                           ELSE '.+' END;
    END LOOP;
    RETURN '^' || array_to_string(out, '\.') || '$';
END
$$;

-- The literal segments before a pattern's first `*` (NULL when it starts
-- with one): reads turn it into a range on the C-collated path index.
CREATE FUNCTION goalrt.path_pattern_prefix(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT NULLIF(pg_catalog.rtrim(pg_catalog.split_part(pattern || '.', '*', 1), '.'), '')
$$;

CREATE TABLE goalrt.state_data (
    -- C collation: byte order, so a prefix is an index range.
    path     text COLLATE "C" PRIMARY KEY CHECK (goalrt.valid_path(path)),
    value    jsonb,            -- NULL: deleted (a tombstone that keeps the version)
    version  bigint NOT NULL CHECK (version >= 0),
    event_id bigint,           -- the state.changed event that last changed it
    -- In a fork, for rows inherited from the main line and not changed since:
    -- the main line position that set them (event_id is then NULL).
    inherited_pos bigint,
    CHECK ((event_id IS NULL) <> (inherited_pos IS NULL))
);

COMMENT ON TABLE goalrt.state_data IS
    'Materialized state: the fold of the state.changed events. Written only by goalrt.change_state; read goalrt.state.';

CREATE INDEX event_data_state_paths_idx ON goalrt.event_data
    USING gin ((data -> 'changes') jsonb_path_ops) WHERE type = 'state.changed';

CREATE VIEW goalrt.state AS
SELECT s.path, s.value, s.version, coalesce(o.pos, s.inherited_pos) AS pos, e.recorded_at AS changed_at
  FROM goalrt.state_data s
  LEFT JOIN goalrt.event_order o ON o.event_id = s.event_id
  LEFT JOIN goalrt.event_data e ON e.id = s.event_id
 WHERE s.value IS NOT NULL;

COMMENT ON VIEW goalrt.state IS
    'Current state: one row per live path with its version and the pos of the change that set it (NULL until the clock ticks).';

-- Direct writes to the materialized tables would make them disagree with
-- the log; only goalrt's own functions may write (they set goalrt.applying
-- for the length of their statement).
CREATE FUNCTION goalrt.refuse_direct_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('goalrt.applying', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'goalrt.% is written only through goalrt.change_state: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'GR006';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER state_data_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON goalrt.state_data
    FOR EACH STATEMENT EXECUTE FUNCTION goalrt.refuse_direct_write();

-- Apply a change set: a JSON array of
--   {"op": "set",    "path": P, "value": V [, "expect_version": N]}
--   {"op": "delete", "path": P            [, "expect_version": N]}
--   {"op": "inc",    "path": P, "by": NUM [, "expect_version": N]}
-- atomically, recording it as one state.changed event. Increments are exact
-- decimal arithmetic; a missing or deleted path counts as 0. expect_version
-- is the version the path must have now (0: never written); if any differs
-- the whole set is refused (GR004) naming the path. Returns one row per
-- change with the path's new version and value.
--
-- The paths are locked in byte order before the event is inserted, so two
-- writers never deadlock, and conflicting change sets reach the log in the
-- order they were applied (the event of the later one gets the higher id
-- and commits later), which is what makes a replay exact.
--
-- enable_seqscan off: every statement here reaches state_data by primary
-- key, but a plan cached while the table was small joins the change set to
-- a scan of the whole table (measured: 2.2x slower at 10,000 paths).
CREATE FUNCTION goalrt.change_state(changes jsonb, stream text DEFAULT 'state', metadata jsonb DEFAULT '{}')
RETURNS TABLE (event_id bigint, path text, version bigint, value jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
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
END
$$;

COMMENT ON FUNCTION goalrt.change_state(jsonb, text, jsonb) IS
    'Apply a change set (set/delete/inc, optional expect_version) atomically as one state.changed event.';

-- The value a path has after a folded run of changes: `reset` says a set or
-- delete happened (reset_value is the last one's value, NULL for a delete),
-- `inc` is the sum of the increments after it. Increments count from 0 on a
-- missing or deleted path. change_state applies the same arithmetic one
-- change at a time; numeric addition is exact, so the two always agree.
CREATE FUNCTION goalrt.fold_value(base jsonb, reset boolean, reset_value jsonb, inc numeric) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
             WHEN inc IS NULL THEN CASE WHEN reset THEN reset_value ELSE base END
             WHEN reset THEN pg_catalog.to_jsonb(coalesce(reset_value::numeric, 0) + inc)
             ELSE pg_catalog.to_jsonb(coalesce(base::numeric, 0) + inc)
           END
$$;

-- The state changes at positions (after_pos, to_pos], folded per path: the
-- arguments of fold_value, how many changes, and the position of the last.
-- path_regex (from path_pattern_regex) limits it to the matching paths.
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

-------------------------------------------------------------------------------
-- Snapshots
--
-- A snapshot is the state at a position. Entries are stored as intervals
-- over snapshot positions: an entry holds a path's value for every snapshot
-- from valid_from up to (not including) valid_to. A new snapshot therefore
-- writes only the paths changed since the previous one, never the whole
-- state. Snapshots are taken in increasing position order; several may share
-- a position. Automatic snapshots are taken at multiples of snapshot_every,
-- so the state at any position is a snapshot plus at most that many events.
-------------------------------------------------------------------------------

CREATE TABLE goalrt.snapshots (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pos        bigint NOT NULL CHECK (pos >= 0),
    name       text UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$'),
    auto       boolean NOT NULL,
    tags       text[] NOT NULL DEFAULT '{}',
    note       text,
    paths      bigint NOT NULL,   -- live paths in the state at pos
    written    bigint NOT NULL,   -- entries this snapshot had to write
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (auto = (name IS NULL))
);
CREATE INDEX snapshots_pos_idx ON goalrt.snapshots (pos);

COMMENT ON TABLE goalrt.snapshots IS
    'State snapshots: named bookmarks and automatic ones (every snapshot_every positions).';

CREATE TABLE goalrt.snapshot_entries (
    path       text COLLATE "C" NOT NULL,
    valid_from bigint NOT NULL,   -- pos of the first snapshot holding this entry
    valid_to   bigint,            -- pos of the first snapshot that does not (NULL: the latest still does)
    value      jsonb,             -- NULL: deleted
    version    bigint NOT NULL,
    pos        bigint NOT NULL,   -- position of the change that set it
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
-- Not unique: a new snapshot closes a path's entry and adds its successor in
-- one statement (one latest entry per path is kept by snapshot_locked, under
-- the snapshot lock).
CREATE INDEX snapshot_entries_latest_idx ON goalrt.snapshot_entries (path) WHERE valid_to IS NULL;
CREATE INDEX snapshot_entries_valid_idx ON goalrt.snapshot_entries USING gist (int8range(valid_from, valid_to));
-- One path's (or one prefix's) entries, for reads of part of the state.
CREATE INDEX snapshot_entries_path_idx ON goalrt.snapshot_entries (path, valid_from);

COMMENT ON TABLE goalrt.snapshot_entries IS
    'Snapshot contents as intervals: the entry is the path''s value in every snapshot with valid_from <= pos < valid_to.';

CREATE TRIGGER snapshot_entries_guard
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON goalrt.snapshot_entries
    FOR EACH STATEMENT EXECUTE FUNCTION goalrt.refuse_direct_write();

-- The position the log starts from: 0, or the fork point in a fork.
CREATE FUNCTION goalrt.base_pos() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT base_pos FROM goalrt.clock
$$;

-- Raise GR005 unless base_pos <= pos <= head.
CREATE FUNCTION goalrt.check_pos(at_pos bigint) RETURNS bigint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    c goalrt.clock;
BEGIN
    SELECT * INTO c FROM goalrt.clock;
    IF at_pos IS NULL OR at_pos < c.base_pos THEN
        RAISE EXCEPTION 'position % is before the start of this log (%)', coalesce(at_pos::text, 'NULL'), c.base_pos
            USING ERRCODE = 'GR005';
    END IF;
    IF at_pos > c.head THEN
        RAISE EXCEPTION 'position % is after the head of the log (%)', at_pos, c.head USING ERRCODE = 'GR005';
    END IF;
    RETURN at_pos;
END
$$;

-- Take a snapshot at at_pos. The caller holds the snapshot lock.
CREATE FUNCTION goalrt.snapshot_locked(at_pos bigint, snap_name text, snap_tags text[], snap_note text)
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

-- Take the automatic snapshots due up to min(up_to, head), at multiples of
-- snapshot_every, each from the one before (so each costs at most that many
-- events). Returns how many it took. Does nothing in a read-only
-- transaction or when another session is already taking snapshots.
CREATE FUNCTION goalrt.auto_snapshot(up_to bigint DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    every  bigint;
    target bigint;
    last   bigint;
    nxt    bigint;
    taken  integer := 0;
BEGIN
    -- A snapshot must see the latest snapshots and clock under its lock, which
    -- only READ COMMITTED gives (a REPEATABLE READ transaction would keep
    -- reading the state from before the lock).
    IF current_setting('transaction_read_only') = 'on'
       OR current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN 0;
    END IF;
    SELECT (value #>> '{}')::bigint INTO every FROM goalrt.settings WHERE key = 'snapshot_every';
    IF every IS NULL OR every <= 0 THEN
        RETURN 0;
    END IF;
    target := (SELECT head FROM goalrt.clock);
    target := least(coalesce(up_to, target), target);
    last := coalesce((SELECT max(pos) FROM goalrt.snapshots), goalrt.base_pos());
    IF (last / every + 1) * every > target THEN
        RETURN 0;
    END IF;
    IF NOT pg_try_advisory_xact_lock('goalrt.snapshots'::regclass::oid::integer, 1) THEN
        RETURN 0;
    END IF;
    last := coalesce((SELECT max(pos) FROM goalrt.snapshots), goalrt.base_pos());
    LOOP
        nxt := (last / every + 1) * every;
        EXIT WHEN nxt > target;
        PERFORM goalrt.snapshot_locked(nxt, NULL, NULL, NULL);
        last := nxt;
        taken := taken + 1;
    END LOOP;
    RETURN taken;
END
$$;

COMMENT ON FUNCTION goalrt.auto_snapshot(bigint) IS
    'Take the automatic snapshots that are due (every snapshot_every positions); returns how many.';

-- Take a named snapshot of the state at the head of the log.
CREATE FUNCTION goalrt.create_snapshot(name text, tags text[] DEFAULT '{}', note text DEFAULT NULL)
RETURNS goalrt.snapshots
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    head bigint;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$' THEN
        RAISE EXCEPTION 'invalid snapshot name %: letters, digits and _ . : @ -, starting with a letter or digit',
            coalesce(quote_literal(name), 'NULL') USING ERRCODE = 'GR003';
    END IF;
    IF EXISTS (SELECT 1 FROM goalrt.snapshots s WHERE s.name = create_snapshot.name) THEN
        RAISE EXCEPTION 'a snapshot named % already exists', name USING ERRCODE = 'GR003';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(tags) t WHERE t IS NULL OR t = '') THEN
        RAISE EXCEPTION 'snapshot tags must be non-empty strings' USING ERRCODE = 'GR003';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'goalrt.create_snapshot() needs a READ COMMITTED transaction' USING ERRCODE = '25000';
    END IF;
    -- The snapshot lock first, then the clock: never hold the clock's lock
    -- while waiting (every reader's tick would wait behind us), and read
    -- the head only once no other snapshot can still be added before it.
    PERFORM pg_advisory_xact_lock('goalrt.snapshots'::regclass::oid::integer, 1);
    head := goalrt.tick();
    -- Automatic snapshots due before this one come first, so the spacing
    -- bound holds on both sides of it.
    PERFORM goalrt.auto_snapshot(head);
    RETURN goalrt.snapshot_locked(head, name, tags, note);
END
$$;

COMMENT ON FUNCTION goalrt.create_snapshot(text, text[], text) IS
    'Take a named, tagged snapshot of the state at the head of the log.';

-- The state at at_pos, with tombstones: the nearest snapshot at or before
-- it plus the changes after it. With use_snapshots => false, only the log
-- itself (from the start, or a fork's base) is folded: that is replay.
CREATE FUNCTION goalrt.state_fold(at_pos bigint, pattern text DEFAULT NULL, use_snapshots boolean DEFAULT true)
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

-- The state as it was at position at_pos (live paths only), for psql users
-- and the APIs. Takes any automatic snapshots that are due first.
CREATE FUNCTION goalrt.state_at(at_pos bigint, pattern text DEFAULT NULL)
RETURNS TABLE (path text, value jsonb, version bigint, pos bigint, changed_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    PERFORM goalrt.check_pos(at_pos);
    PERFORM goalrt.auto_snapshot(at_pos);
    -- changed_at by key lookups per row: a join here was planned from the
    -- function's row estimate as a scan of all of event_order.
    RETURN QUERY
    SELECT s.path, s.value, s.version, s.pos,
           (SELECT e.recorded_at FROM goalrt.event_order o JOIN goalrt.event_data e ON e.id = o.event_id
             WHERE o.pos = s.pos)
      FROM goalrt.state_fold(at_pos, pattern) s
     WHERE s.value IS NOT NULL
     ORDER BY s.path;
END
$$;

COMMENT ON FUNCTION goalrt.state_at(bigint, text) IS
    'The state at a past position: nearest snapshot at or before it plus the events after it.';

-- The position of the log at a time: the end of the longest prefix of the
-- log whose events were all recorded at or before at_time (event_order's
-- log_time is the running maximum of recorded_at, so a binary search works).
CREATE FUNCTION goalrt.pos_at(at_time timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    lo  bigint;
    hi  bigint;
    mid bigint;
BEGIN
    IF at_time IS NULL THEN
        RAISE EXCEPTION 'a time is required' USING ERRCODE = 'GR005';
    END IF;
    SELECT base_pos, head INTO lo, hi FROM goalrt.clock;
    WHILE lo < hi LOOP
        mid := (lo + hi + 1) / 2;
        IF (SELECT o.log_time FROM goalrt.event_order o WHERE o.pos = mid) <= at_time THEN
            lo := mid;
        ELSE
            hi := mid - 1;
        END IF;
    END LOOP;
    RETURN lo;
END
$$;

COMMENT ON FUNCTION goalrt.pos_at(timestamptz) IS
    'The last position whose events (and all before it) were recorded at or before the given time.';

CREATE FUNCTION goalrt.state_at_time(at_time timestamptz, pattern text DEFAULT NULL)
RETURNS TABLE (path text, value jsonb, version bigint, pos bigint, changed_at timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT * FROM goalrt.state_at(goalrt.pos_at(at_time), pattern)
$$;

COMMENT ON FUNCTION goalrt.state_at_time(timestamptz, text) IS
    'The state as it was at a time: goalrt.state_at(goalrt.pos_at(at_time)).';

-- Every value a path has held, oldest first, from the log (in a fork: from
-- its base, as op 'base'). deleted is true where the change deleted it.
CREATE FUNCTION goalrt.state_history(path text)
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

COMMENT ON FUNCTION goalrt.state_history(text) IS
    'Every value a path has held, with positions, versions and times (value NULL where deleted).';

-- For replay: wait (at most wait_ms) for in-flight state writers, block
-- new ones until the caller's transaction ends, and tick until every change
-- in state_data has a position. Returns the head: state_data is then exactly
-- the fold of the log up to it. If the writers or the clock are busy it
-- gives up with SQLSTATE 55P03 instead of holding writers back; roll back
-- and try again (goalrt.replay does). Call it first in a READ COMMITTED
-- transaction.
CREATE FUNCTION goalrt.state_freeze(wait_ms integer DEFAULT 500) RETURNS bigint
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

COMMENT ON FUNCTION goalrt.state_freeze(integer) IS
    'Block state writers for the rest of the transaction and return the head at which state_data equals the log''s fold.';

-------------------------------------------------------------------------------
-- Forks
--
-- A fork is a schema (goalrt_fork_<name>) built from this file, holding the
-- state at a position of the main line and a log of its own that continues
-- from that position. goalrt's Python code creates and drops them; this
-- table in the main schema lists them.
-------------------------------------------------------------------------------

CREATE TABLE goalrt.forks (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    -- Always derived from the name: code that reads it may trust it.
    schema_name text NOT NULL UNIQUE CHECK (schema_name = 'goalrt_fork_' || name),
    base_pos    bigint NOT NULL,
    base_hash   bytea NOT NULL,
    revision    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE goalrt.forks IS
    'Forks of the main line: isolated copies of the state at base_pos, each in its own schema.';

-------------------------------------------------------------------------------
-- Goals
--
-- A goal is one row of goalrt.goals; its steps (the plan) are rows of
-- goalrt.goal_steps; everything that happens to it is an event in the stream
-- 'goal:<id>'. Lifecycle (enforced by a trigger):
--
--   pending -> active -> (waiting <-> active) -> complete | failed | cancelled
--   pending -> cancelled, waiting -> failed | cancelled
--
-- Workers claim runnable goals with FOR UPDATE SKIP LOCKED in the order
-- (priority DESC, run_at, id), taking a lease: an owner, an expiry and an
-- epoch that every claim increments (the fencing token). A worker's result
-- is applied only while its lease is held: same epoch, not expired, goal
-- still active. Anything else is refused and recorded as
-- step.result_refused. A lease that expires (the worker died or stalled) is
-- taken over by the next claim of any worker: there is no janitor.
--
-- Functions that running workers call carry a version suffix (_v1), so old
-- and new workers can overlap during a deploy.
--
-- enable_seqscan off on the functions that reach goals by id or by the
-- claim index: a worker's connection caches their plans, and a plan made
-- while the tables were analyzed empty scans them whole on every call, so
-- the cost grows with the backlog (found by bench/goals_bench.py: 3x slower).
-------------------------------------------------------------------------------

-- Goal types registered by workers (and by `goalrt submit --handlers`): the
-- JSON Schema of their parameters, checked at submit by goalrt.params_problem.
CREATE TABLE goalrt.goal_types (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$'),
    params_schema jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params_schema) = 'object'),
    registered_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE goalrt.goal_types IS
    'Goal types known to the cluster, with the JSON Schema of their parameters.';

CREATE TABLE goalrt.goals (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'active', 'waiting', 'complete', 'failed', 'cancelled')),
    -- Higher runs first.
    priority         integer     NOT NULL DEFAULT 0,
    -- Not claimed before this time (a delayed submit, a retry's backoff).
    run_at           timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text        UNIQUE CHECK (idempotency_key <> '' AND length(idempotency_key) <= 512),
    parent_id        bigint      REFERENCES goalrt.goals (id),
    partition_key    text,
    -- How many plans the goal has had (0: not planned yet) and the step to
    -- run next (NULL when there is none).
    plan_no          integer     NOT NULL DEFAULT 0,
    step_seq         integer,
    lease_owner      text,
    lease_epoch      bigint      NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    -- How many times the goal was claimed.
    claims           integer     NOT NULL DEFAULT 0,
    result           jsonb,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT goals_lease_whole CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT goals_lease_active CHECK (lease_owner IS NULL OR status = 'active')
);
-- The claim query walks this index in claim order and stops after a batch.
CREATE INDEX goals_runnable_idx ON goalrt.goals (priority DESC, run_at, id)
    WHERE status IN ('pending', 'active');
CREATE INDEX goals_status_idx ON goalrt.goals (status, id);
CREATE INDEX goals_name_idx ON goalrt.goals (name, id);
CREATE INDEX goals_parent_idx ON goalrt.goals (parent_id) WHERE parent_id IS NOT NULL;

COMMENT ON TABLE goalrt.goals IS
    'One row per goal: lifecycle, priority, schedule, lease, plan position, result. History is in the events.';

-- The steps of a goal's plans, in order. A new plan marks the steps left of
-- the old one superseded and appends its own, so seq keeps increasing.
CREATE TABLE goalrt.goal_steps (
    goal_id         bigint      NOT NULL REFERENCES goalrt.goals (id),
    seq             integer     NOT NULL CHECK (seq >= 1),
    plan_no         integer     NOT NULL CHECK (plan_no >= 1),
    action          text        NOT NULL CHECK (action <> '' AND length(action) <= 200),
    args            jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'complete', 'failed', 'superseded', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    result          jsonb,
    error           text,
    -- The lease epoch under which the step completed: lets a worker whose
    -- commit was cut off recognise its own result when it retries.
    completed_epoch bigint,
    started_at      timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (goal_id, seq)
);

COMMENT ON TABLE goalrt.goal_steps IS
    'The steps of each goal''s plans: action, arguments, status, attempts, result or error.';

-- Live worker processes. A worker refreshes last_seen with each heartbeat
-- and removes its row on a clean exit; a killed worker's row stays, with an
-- old last_seen, until another worker registers a day later.
CREATE TABLE goalrt.workers (
    id          text PRIMARY KEY,
    name        text        NOT NULL,
    hostname    text        NOT NULL,
    pid         integer     NOT NULL,
    concurrency integer     NOT NULL,
    goal_types  text[]      NOT NULL DEFAULT '{}',
    actions     text[]      NOT NULL DEFAULT '{}',
    started_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE goalrt.workers IS 'Worker processes, with their heartbeat (last_seen).';

-- The lifecycle, enforced for every writer (goalrt's functions and anyone
-- with UPDATE rights alike).
CREATE FUNCTION goalrt.check_goal_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    allowed text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'invalid goal transition: a new goal starts pending, not %', NEW.status
                USING ERRCODE = 'GR007';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    allowed := CASE OLD.status
                 WHEN 'pending' THEN ARRAY['active', 'cancelled']
                 WHEN 'active'  THEN ARRAY['waiting', 'complete', 'failed', 'cancelled']
                 WHEN 'waiting' THEN ARRAY['active', 'failed', 'cancelled']
                 ELSE '{}'::text[]
               END;
    IF NOT NEW.status = ANY (allowed) THEN
        RAISE EXCEPTION 'invalid goal transition for goal %: % -> % (%)', OLD.id, OLD.status, NEW.status,
            CASE WHEN cardinality(allowed) = 0 THEN OLD.status || ' is final'
                 ELSE 'from ' || OLD.status || ' only to ' || array_to_string(allowed, ', ') END
            USING ERRCODE = 'GR007';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER goals_lifecycle
    BEFORE INSERT OR UPDATE OF status ON goalrt.goals
    FOR EACH ROW EXECUTE FUNCTION goalrt.check_goal_transition();

-- Register (or update) a goal type and the JSON Schema of its parameters.
CREATE FUNCTION goalrt.register_goal_type(name text, params_schema jsonb DEFAULT '{}') RETURNS void
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
    INSERT INTO goalrt.goal_types AS t (name, params_schema)
    VALUES (register_goal_type.name, register_goal_type.params_schema)
    ON CONFLICT ON CONSTRAINT goal_types_pkey DO UPDATE
       SET params_schema = excluded.params_schema, registered_at = now()
     WHERE t.params_schema IS DISTINCT FROM excluded.params_schema;
END
$$;

COMMENT ON FUNCTION goalrt.register_goal_type(text, jsonb) IS
    'Register a goal type with the JSON Schema of its parameters (workers do this on start).';

-- The JSON types a (small) JSON Schema allows: from "type" (a name or a
-- list), or from the alternatives of "anyOf"/"oneOf" (how pydantic writes
-- Optional[...]); a "$ref" is an object. NULL means any type.
CREATE FUNCTION goalrt.schema_types(spec jsonb) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    alts  jsonb;
    alt   jsonb;
    kinds text[] := '{}';
    more  text[];
BEGIN
    IF jsonb_typeof(spec) IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    ELSIF jsonb_typeof(spec -> 'type') = 'array' THEN
        RETURN ARRAY(SELECT jsonb_array_elements_text(spec -> 'type'));
    ELSIF jsonb_typeof(spec -> 'type') = 'string' THEN
        RETURN ARRAY[spec ->> 'type'];
    ELSIF spec ? '$ref' THEN
        RETURN ARRAY['object'];
    END IF;
    alts := coalesce(spec -> 'anyOf', spec -> 'oneOf');
    IF jsonb_typeof(alts) IS DISTINCT FROM 'array' THEN
        RETURN NULL;
    END IF;
    FOR alt IN SELECT a FROM jsonb_array_elements(alts) AS t(a) LOOP
        more := goalrt.schema_types(alt);
        IF more IS NULL THEN
            RETURN NULL;
        END IF;
        kinds := kinds || more;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT k FROM unnest(kinds) AS k ORDER BY 1);
END
$$;

-- The first problem of params against a goal type's JSON Schema (required
-- fields, unknown fields when additionalProperties is false, and the JSON
-- type of each field), or NULL when there is none. Workers validate fully
-- (pydantic) when they plan; this catches what psql users get wrong.
CREATE FUNCTION goalrt.params_problem(params_schema jsonb, params jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    field text;
    value jsonb;
    want  text[];
    got   text;
BEGIN
    IF params IS NULL OR jsonb_typeof(params) <> 'object' THEN
        RETURN 'params must be a JSON object';
    END IF;
    FOR field IN
        SELECT r FROM jsonb_array_elements_text(
                        CASE WHEN jsonb_typeof(params_schema -> 'required') = 'array'
                             THEN params_schema -> 'required' ELSE '[]' END) AS r
         ORDER BY 1
    LOOP
        IF NOT params ? field THEN
            RETURN format('params.%s is required', field);
        END IF;
    END LOOP;
    FOR field, value IN SELECT e.key, e.value FROM jsonb_each(params) AS e ORDER BY 1 LOOP
        IF NOT coalesce(params_schema -> 'properties', '{}') ? field THEN
            IF params_schema -> 'additionalProperties' = 'false'::jsonb THEN
                RETURN format('params.%s is not a parameter (expected: %s)', field,
                              coalesce((SELECT string_agg(k, ', ' ORDER BY k)
                                          FROM jsonb_object_keys(params_schema -> 'properties') k), 'none'));
            END IF;
            CONTINUE;
        END IF;
        want := goalrt.schema_types(params_schema -> 'properties' -> field);
        got := jsonb_typeof(value);
        IF want IS NULL OR got = ANY (want)
           OR (got = 'number' AND 'integer' = ANY (want) AND value::numeric = trunc(value::numeric)) THEN
            CONTINUE;
        END IF;
        RETURN format('params.%s must be %s, got %s', field, array_to_string(want, ' or '), got);
    END LOOP;
    RETURN NULL;
END
$$;

-- Submit one goal. options (all optional):
--   priority       integer, higher runs first (default 0)
--   run_at         a time (ISO 8601) before which the goal is not claimed
--   delay          seconds (a number) to wait before it may be claimed
--   key            an idempotency key: submitting again with the same key
--                  returns the goal already submitted (created = false)
--   parent_id      the goal that started this one
--   partition_key  free text that places the goal (used by worker affinity)
-- `label` prefixes error messages (submit_goals passes "goals[i].").
CREATE FUNCTION goalrt.submit_one(name text, params jsonb, options jsonb, label text)
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
    problem := goalrt.params_problem(gt.params_schema, coalesce(params, '{}'));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '%invalid params for goal %: %', label, name, problem USING ERRCODE = 'GR008';
    END IF;

    IF jsonb_typeof(o) <> 'object' THEN
        RAISE EXCEPTION '%options must be a JSON object', label USING ERRCODE = 'GR008';
    END IF;
    SELECT min(k) INTO bad_key FROM jsonb_object_keys(o) k
     WHERE k NOT IN ('priority', 'run_at', 'delay', 'key', 'parent_id', 'partition_key');
    IF bad_key IS NOT NULL THEN
        RAISE EXCEPTION '%options.% is not an option (priority, run_at, delay, key, parent_id, partition_key)',
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
    INSERT INTO goalrt.goals AS g (name, params, priority, run_at, idempotency_key, parent_id, partition_key)
    VALUES (submit_one.name, coalesce(params, '{}'), coalesce(prio, 0), start_at, gkey, parent,
            o ->> 'partition_key')
    ON CONFLICT (idempotency_key) DO NOTHING
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
                'run_at', start_at, 'key', gkey, 'parent_id', parent, 'partition_key', o ->> 'partition_key')));
    RETURN QUERY SELECT new_id, true;
END
$$;

CREATE FUNCTION goalrt.submit_goal(name text, params jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM goalrt.submit_one(name, params, options, '');
    -- Wake idle workers. Identical payloads coalesce within a transaction;
    -- the notification is a hint, workers also poll.
    IF r.created THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
    RETURN QUERY SELECT r.id, r.created;
END
$$;

COMMENT ON FUNCTION goalrt.submit_goal(text, jsonb, jsonb) IS
    'Submit a goal (options: priority, run_at, delay, key, parent_id, partition_key); returns (id, created).';

-- Submit many goals in one transaction: a JSON array of
-- {"name": ..., "params": {...}, "options": {...}}. All or nothing; an error
-- names the element (goals[3].params.amount ...).
CREATE FUNCTION goalrt.submit_goals(goals jsonb)
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    x   jsonb;
    i   integer := 0;
    r   record;
    any_new boolean := false;
BEGIN
    IF goals IS NULL OR jsonb_typeof(goals) <> 'array' THEN
        RAISE EXCEPTION 'goals must be a JSON array of {"name", "params", "options"} objects' USING ERRCODE = 'GR008';
    END IF;
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

COMMENT ON FUNCTION goalrt.submit_goals(jsonb) IS
    'Submit a JSON array of goals atomically; returns (id, created) per element, in order.';

-- Cancel a goal that has not finished. A worker running one of its steps
-- learns it from the goalrt_cancel notification (or its next heartbeat),
-- and its result is refused.
CREATE FUNCTION goalrt.cancel_goal(goal_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    g goalrt.goals;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = cancel_goal.goal_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal % does not exist', coalesce(goal_id::text, 'NULL') USING ERRCODE = 'GR009';
    END IF;
    IF g.status IN ('complete', 'failed', 'cancelled') THEN
        RAISE EXCEPTION 'cannot cancel goal %: it is already %', g.id, g.status USING ERRCODE = 'GR007';
    END IF;
    UPDATE goalrt.goal_steps s
       SET status = 'cancelled', finished_at = now()
     WHERE s.goal_id = g.id AND s.status IN ('pending', 'running');
    UPDATE goalrt.goals
       SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, step_seq = NULL,
           last_error = coalesce(reason, 'cancelled'), updated_at = now(), finished_at = now()
     WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.cancelled',
            jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'reason', reason, 'from', g.status,
                                                 'step', g.step_seq, 'worker', g.lease_owner)));
    IF g.lease_owner IS NOT NULL THEN
        PERFORM pg_notify('goalrt_cancel', g.id::text);
    END IF;
    RETURN QUERY SELECT g.id, 'cancelled'::text;
END
$$;

COMMENT ON FUNCTION goalrt.cancel_goal(bigint, text) IS
    'Cancel a pending, active or waiting goal; refused (GR007) for a finished one.';

-- Record a worker process (and clear rows of workers unseen for a day).
CREATE FUNCTION goalrt.register_worker_v1(
    worker_id text, name text, hostname text, pid integer, concurrency integer, goal_types text[], actions text[]
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    DELETE FROM goalrt.workers w WHERE w.last_seen < now() - interval '1 day';
    INSERT INTO goalrt.workers AS w (id, name, hostname, pid, concurrency, goal_types, actions)
    VALUES (worker_id, register_worker_v1.name, register_worker_v1.hostname, register_worker_v1.pid,
            register_worker_v1.concurrency, coalesce(register_worker_v1.goal_types, '{}'),
            coalesce(register_worker_v1.actions, '{}'))
    ON CONFLICT ON CONSTRAINT workers_pkey DO UPDATE
       SET name = excluded.name, hostname = excluded.hostname, pid = excluded.pid,
           concurrency = excluded.concurrency, goal_types = excluded.goal_types, actions = excluded.actions,
           started_at = now(), last_seen = now();
END
$$;

CREATE FUNCTION goalrt.deregister_worker_v1(worker_id text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    DELETE FROM goalrt.workers w WHERE w.id = worker_id;
$$;

-- Claim up to max_count runnable goals for a worker, in claim order
-- (priority DESC, run_at, id), skipping rows other claimers hold. A
-- runnable goal is pending or active, due, and not leased (or its lease
-- expired: its worker died or stalled, and this claim takes it over).
-- Each claim increments the lease epoch, counts an attempt of the goal's
-- current step and marks it running. Returns the claimed goals with the
-- step to run (step_seq NULL: the goal has no plan yet).
CREATE FUNCTION goalrt.claim_goals_v1(
    worker_id text, max_count integer, lease_seconds double precision, goal_types text[] DEFAULT NULL
) RETURNS TABLE (
    goal_id bigint, name text, params jsonb, epoch bigint, plan_no integer, step_seq integer,
    action text, args jsonb, attempt integer
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
BEGIN
    IF worker_id IS NULL OR worker_id = '' THEN
        RAISE EXCEPTION 'worker_id must be a non-empty string' USING ERRCODE = 'GR008';
    END IF;
    IF lease_seconds IS NULL OR lease_seconds <= 0 THEN
        RAISE EXCEPTION 'lease_seconds must be > 0' USING ERRCODE = 'GR008';
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT g.id, g.status AS was, g.lease_owner AS prev_owner, g.lease_epoch AS prev_epoch
          FROM goalrt.goals g
         WHERE g.status IN ('pending', 'active')
           AND g.run_at <= now()
           AND (g.lease_expires_at IS NULL OR g.lease_expires_at <= now())
           AND (claim_goals_v1.goal_types IS NULL OR g.name = ANY (claim_goals_v1.goal_types))
         ORDER BY g.priority DESC, g.run_at, g.id
         LIMIT greatest(max_count, 0)
           FOR UPDATE SKIP LOCKED
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

COMMENT ON FUNCTION goalrt.claim_goals_v1(text, integer, double precision, text[]) IS
    'Claim runnable goals in (priority DESC, run_at, id) order with SKIP LOCKED, leasing each with a new epoch.';

-- Whether worker_id holds goal g's lease at epoch `epoch` right now.
CREATE FUNCTION goalrt.holds_lease(g goalrt.goals, worker_id text, epoch bigint) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT g.status = 'active' AND g.lease_owner = worker_id AND g.lease_epoch = epoch
           AND g.lease_expires_at > now()
$$;

-- Why a result under (worker, epoch) is refused for goal g.
CREATE FUNCTION goalrt.lease_lost_reason(g goalrt.goals, worker_id text, epoch bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT CASE
             WHEN g.status <> 'active' THEN 'goal is ' || g.status
             WHEN g.lease_epoch <> epoch THEN format('lease epoch %s was superseded by epoch %s', epoch, g.lease_epoch)
             WHEN g.lease_owner IS DISTINCT FROM worker_id THEN 'lease was released'
             ELSE 'lease expired at ' || g.lease_expires_at
           END
$$;

-- Store the plans a worker computed for goals it holds: a JSON array of
-- {"goal_id", "epoch", "steps": [{"action", "args"}, ...], "replan": bool}.
-- A goal already planned keeps its plan unless replan is true; then the
-- steps left of the earlier plan are superseded. The first step of the new plan starts
-- (attempt 1) at once; an empty plan completes the goal. Returns per goal
-- the outcome: 'planned' (with the step to run), 'complete', or 'refused'
-- (the lease was lost; recorded as an event).
CREATE FUNCTION goalrt.plan_goals_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    x      jsonb;
    g      goalrt.goals;
    ep     bigint;
    first  integer;
    n      integer;
    cur    goalrt.goal_steps;
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, i) ORDER BY (e ->> 'goal_id')::bigint
    LOOP
        IF jsonb_typeof(x -> 'steps') IS DISTINCT FROM 'array' OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(x -> 'steps') s
                WHERE jsonb_typeof(s -> 'action') IS DISTINCT FROM 'string' OR s ->> 'action' = '') THEN
            RAISE EXCEPTION 'plan for goal %: steps must be an array of {"action", "args"}', x ->> 'goal_id'
                USING ERRCODE = 'GR008';
        END IF;
        goal_id := (x ->> 'goal_id')::bigint;
        ep := (x ->> 'epoch')::bigint;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR UPDATE;
        IF g.id IS NULL OR NOT goalrt.holds_lease(g, worker_id, ep) THEN
            IF g.id IS NOT NULL THEN
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES ('goal:' || g.id, 'goal.plan_refused',
                        jsonb_build_object('goal_id', g.id, 'worker', worker_id, 'epoch', ep,
                                           'reason', goalrt.lease_lost_reason(g, worker_id, ep)));
            END IF;
            outcome := 'refused'; step_seq := NULL; action := NULL; args := NULL; attempt := NULL;
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
        UPDATE goalrt.goal_steps st SET status = 'superseded'
         WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
        first := coalesce((SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id), 0) + 1;
        n := jsonb_array_length(x -> 'steps');
        INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, action, args, status, attempts, started_at)
        SELECT g.id, first + i::integer - 1, g.plan_no + 1, s ->> 'action', coalesce(s -> 'args', '{}'),
               CASE WHEN i = 1 THEN 'running' ELSE 'pending' END, CASE WHEN i = 1 THEN 1 ELSE 0 END,
               CASE WHEN i = 1 THEN now() END
          FROM jsonb_array_elements(x -> 'steps') WITH ORDINALITY AS t(s, i);
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.planned',
                jsonb_build_object('goal_id', g.id, 'plan_no', g.plan_no + 1, 'first_seq', first,
                                   'steps', x -> 'steps'));
        IF n = 0 THEN
            UPDATE goalrt.goals
               SET plan_no = g.plan_no + 1, step_seq = NULL, status = 'complete', lease_owner = NULL,
                   lease_expires_at = NULL, updated_at = now(), finished_at = now()
             WHERE goals.id = g.id;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('goal:' || g.id, 'goal.completed', jsonb_build_object('goal_id', g.id, 'result', NULL));
            outcome := 'complete'; step_seq := NULL; action := NULL; args := NULL; attempt := NULL;
        ELSE
            UPDATE goalrt.goals
               SET plan_no = g.plan_no + 1, step_seq = first, updated_at = now(),
                   lease_expires_at = greatest(g.lease_expires_at, now() + make_interval(secs => lease_seconds))
             WHERE goals.id = g.id;
            outcome := 'planned'; step_seq := first; action := x -> 'steps' -> 0 ->> 'action';
            args := coalesce(x -> 'steps' -> 0 -> 'args', '{}'); attempt := 1;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION goalrt.plan_goals_v1(text, jsonb, double precision) IS
    'Store the plans (steps) a worker computed for goals whose leases it holds.';

-- Record the outcome of steps run by a worker, each in its own right and
-- only while the worker still holds the goal's lease at that epoch. items is
-- a JSON array of
--   {"goal_id", "epoch", "seq", "outcome": "complete" | "retry" | "fail",
--    "result", "changes" (a change set for goalrt.change_state), "events"
--    ([{"type", "data"}] appended to the goal's stream), "error",
--    "retry_in" (seconds), "continue" (start the next step at once)}
-- For each item it returns what happened:
--   'continue'        next step started under the same lease (step_seq, action, args, attempt)
--   'complete'        the goal completed
--   'retry'           the goal waits until its retry time, lease released
--   'failed'          the step and the goal failed
--   'released'        the next step is left for any worker (continue was false)
--   'already_applied' this exact result was applied before (a retried commit)
--   'refused'         the lease was lost: nothing applied, step.result_refused recorded
--   'change_refused'  the state change was refused (error says why): nothing applied
CREATE FUNCTION goalrt.complete_steps_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (
    goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer, error text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    x       jsonb;
    g       goalrt.goals;
    s       goalrt.goal_steps;
    ep      bigint;
    sq      integer;
    nxt     goalrt.goal_steps;
    stream  text;
    delay   double precision;
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    -- Lock goals in id order: two workers' batches never deadlock.
    FOR x IN SELECT e FROM jsonb_array_elements(items) AS t(e) ORDER BY (e ->> 'goal_id')::bigint LOOP
        goal_id := (x ->> 'goal_id')::bigint;
        ep := (x ->> 'epoch')::bigint;
        sq := (x ->> 'seq')::integer;
        outcome := NULL; step_seq := NULL; action := NULL; args := NULL; attempt := NULL; error := NULL;
        IF x ->> 'outcome' IS NULL OR x ->> 'outcome' NOT IN ('complete', 'retry', 'fail') THEN
            RAISE EXCEPTION 'items: outcome must be complete, retry or fail (goal %)', goal_id USING ERRCODE = 'GR008';
        END IF;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR UPDATE;
        IF NOT FOUND THEN
            outcome := 'refused'; error := format('goal %s does not exist', goal_id);
            RETURN NEXT;
            CONTINUE;
        END IF;
        stream := 'goal:' || g.id;
        SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = sq;

        IF NOT goalrt.holds_lease(g, worker_id, ep) OR g.step_seq IS DISTINCT FROM sq
           OR s.status IS DISTINCT FROM 'running' THEN
            IF x ->> 'outcome' = 'complete' AND s.status = 'complete' AND s.completed_epoch = ep THEN
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
                INSERT INTO goalrt.event_data (stream, type, data, metadata)
                SELECT stream, e ->> 'type', coalesce(e -> 'data', '{}'),
                       jsonb_build_object('goal_id', g.id, 'seq', sq, 'idempotency_key', g.id || ':' || sq)
                  FROM jsonb_array_elements(x -> 'events') WITH ORDINALITY AS t(e, i)
                 ORDER BY i;
            END IF;
            UPDATE goalrt.goal_steps st
               SET status = 'complete', result = x -> 'result', error = NULL, completed_epoch = ep,
                   finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.completed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'epoch', ep, 'worker', worker_id, 'result', x -> 'result'));
            SELECT * INTO nxt FROM goalrt.goal_steps st
             WHERE st.goal_id = g.id AND st.seq > sq AND st.status = 'pending' AND st.plan_no = g.plan_no
             ORDER BY st.seq LIMIT 1;
            IF NOT FOUND THEN
                UPDATE goalrt.goals
                   SET status = 'complete', result = x -> 'result', step_seq = NULL, lease_owner = NULL,
                       lease_expires_at = NULL, last_error = NULL, updated_at = now(), finished_at = now()
                 WHERE goals.id = g.id;
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES (stream, 'goal.completed', jsonb_build_object('goal_id', g.id, 'result', x -> 'result'));
                outcome := 'complete';
            ELSIF coalesce((x ->> 'continue')::boolean, false) THEN
                UPDATE goalrt.goal_steps st SET status = 'running', attempts = st.attempts + 1, started_at = now()
                 WHERE st.goal_id = g.id AND st.seq = nxt.seq;
                UPDATE goalrt.goals
                   SET step_seq = nxt.seq, updated_at = now(),
                       lease_expires_at = greatest(g.lease_expires_at, now() + make_interval(secs => lease_seconds))
                 WHERE goals.id = g.id;
                outcome := 'continue';
                step_seq := nxt.seq; action := nxt.action; args := nxt.args; attempt := nxt.attempts + 1;
            ELSE
                UPDATE goalrt.goals
                   SET step_seq = nxt.seq, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                 WHERE goals.id = g.id;
                outcome := 'released';
                step_seq := nxt.seq;
            END IF;
        ELSIF x ->> 'outcome' = 'retry' THEN
            delay := greatest(coalesce((x ->> 'retry_in')::double precision, 0), 0);
            UPDATE goalrt.goal_steps st SET status = 'pending', error = x ->> 'error'
             WHERE st.goal_id = g.id AND st.seq = sq;
            UPDATE goalrt.goals
               SET run_at = now() + make_interval(secs => delay), lease_owner = NULL, lease_expires_at = NULL,
                   last_error = x ->> 'error', updated_at = now()
             WHERE goals.id = g.id;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'retry_in', delay, 'final', false));
            outcome := 'retry';
        ELSE
            UPDATE goalrt.goal_steps st SET status = 'failed', error = x ->> 'error', finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            UPDATE goalrt.goal_steps st SET status = 'cancelled'
             WHERE st.goal_id = g.id AND st.status = 'pending';
            UPDATE goalrt.goals
               SET status = 'failed', step_seq = NULL, lease_owner = NULL, lease_expires_at = NULL,
                   last_error = x ->> 'error', updated_at = now(), finished_at = now()
             WHERE goals.id = g.id;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'final', true));
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'goal.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'error', x ->> 'error'));
            outcome := 'failed';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION goalrt.complete_steps_v1(text, jsonb, double precision) IS
    'Apply step results (result, state changes, events, advance) only under a held lease; refuse and record others.';

-- Fail goals a worker holds before any step runs (invalid params, a plan
-- that cannot be made): [{"goal_id", "epoch", "error"}]. Returns the goals
-- failed; others (lease lost) are left alone.
CREATE FUNCTION goalrt.fail_goals_v1(worker_id text, items jsonb)
RETURNS TABLE (goal_id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
DECLARE
    x jsonb;
    g goalrt.goals;
BEGIN
    FOR x IN SELECT e FROM jsonb_array_elements(coalesce(items, '[]')) AS t(e) ORDER BY (e ->> 'goal_id')::bigint LOOP
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = (x ->> 'goal_id')::bigint FOR UPDATE;
        goal_id := (x ->> 'goal_id')::bigint;
        IF NOT FOUND OR NOT goalrt.holds_lease(g, worker_id, (x ->> 'epoch')::bigint) THEN
            outcome := 'refused';
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE goalrt.goal_steps st SET status = 'cancelled', finished_at = now()
         WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
        UPDATE goalrt.goals
           SET status = 'failed', step_seq = NULL, lease_owner = NULL, lease_expires_at = NULL,
               last_error = x ->> 'error', updated_at = now(), finished_at = now()
         WHERE goals.id = g.id;
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.failed', jsonb_build_object('goal_id', g.id, 'error', x ->> 'error'));
        outcome := 'failed';
        RETURN NEXT;
    END LOOP;
END
$$;

-- Extend the leases a worker still holds and refresh its heartbeat. Returns
-- the ids of the goals whose leases it holds (anything else it must stop).
CREATE FUNCTION goalrt.heartbeat_v1(
    worker_id text, goal_ids bigint[], epochs bigint[], lease_seconds double precision
) RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
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
           FOR UPDATE OF g
    )
    UPDATE goalrt.goals g
       SET lease_expires_at = now() + make_interval(secs => lease_seconds)
      FROM held
     WHERE g.id = held.id
    RETURNING g.id;
END
$$;

-- Give back leases a worker holds but will not finish (it is shutting
-- down): the goals become claimable at once, and the interrupted step's
-- attempt does not count. Returns the goals released.
CREATE FUNCTION goalrt.release_goals_v1(worker_id text, goal_ids bigint[], epochs bigint[])
RETURNS TABLE (goal_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off AS $$
BEGIN
    RETURN QUERY
    WITH held AS (
        SELECT g.id, g.step_seq
          FROM goalrt.goals g
          JOIN unnest(goal_ids, epochs) AS h(id, epoch) ON g.id = h.id AND g.lease_epoch = h.epoch
         WHERE g.lease_owner = worker_id AND g.status = 'active'
         ORDER BY g.id
           FOR UPDATE OF g
    ), steps AS (
        UPDATE goalrt.goal_steps s SET status = 'pending', attempts = greatest(s.attempts - 1, 0)
          FROM held
         WHERE s.goal_id = held.id AND s.seq = held.step_seq AND s.status = 'running'
        RETURNING s.goal_id
    ), released AS (
        UPDATE goalrt.goals g SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
          FROM held WHERE g.id = held.id
        RETURNING g.id, g.step_seq
    ), recorded AS (
        INSERT INTO goalrt.event_data (stream, type, data)
        SELECT 'goal:' || r.id, 'goal.released',
               jsonb_strip_nulls(jsonb_build_object('goal_id', r.id, 'worker', worker_id, 'step', r.step_seq))
          FROM released r ORDER BY r.id
    )
    SELECT r.id FROM released r ORDER BY r.id;
    IF FOUND THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
END
$$;

-------------------------------------------------------------------------------
-- Roles and privileges
--
-- Three group roles (NOLOGIN; grant them to your login roles):
--   goalrt_reader  reads the log (the view, read_events, verify_chain, tick)
--   goalrt_writer  reader + appends through the append functions only
--   goalrt_admin   writer + may create objects in the goalrt schema
-- Roles are cluster-wide, so they are created only when missing and are not
-- dropped by a downgrade (another database may use them).
-------------------------------------------------------------------------------

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['goalrt_reader', 'goalrt_writer', 'goalrt_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'goalrt: this role may not create roles; create goalrt_reader, goalrt_writer and goalrt_admin yourself';
END
$$;

REVOKE ALL ON SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA goalrt FROM PUBLIC;

DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA goalrt TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT CREATE ON SCHEMA goalrt TO goalrt_admin;
    GRANT SELECT ON goalrt.events, goalrt.event_data, goalrt.event_order, goalrt.clock
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.read_events(bigint, integer, text, text, boolean),
        goalrt.tick(integer),
        goalrt.verify_chain(),
        goalrt.event_digest(bigint, text, text, jsonb, jsonb, timestamptz),
        goalrt.chain_hash(bytea, bigint, bytea),
        goalrt.glob_to_like(text)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.append_event(text, text, jsonb, jsonb),
        goalrt.append_events(jsonb)
        TO goalrt_writer, goalrt_admin;
    -- State: readers read it (and may take the automatic snapshots that
    -- state_at needs); writers change it and take named snapshots.
    GRANT SELECT ON goalrt.state, goalrt.state_data, goalrt.snapshots, goalrt.snapshot_entries,
                    goalrt.settings, goalrt.forks
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.valid_path(text),
        goalrt.path_pattern_regex(text),
        goalrt.path_pattern_prefix(text),
        goalrt.fold_value(jsonb, boolean, jsonb, numeric),
        goalrt.fold_changes(bigint, bigint, text),
        goalrt.base_pos(),
        goalrt.check_pos(bigint),
        goalrt.state_fold(bigint, text, boolean),
        goalrt.state_at(bigint, text),
        goalrt.state_at_time(timestamptz, text),
        goalrt.pos_at(timestamptz),
        goalrt.state_history(text),
        goalrt.auto_snapshot(bigint)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.change_state(jsonb, text, jsonb),
        goalrt.create_snapshot(text, text[], text),
        goalrt.state_freeze(integer)
        TO goalrt_writer, goalrt_admin;
    -- Goals: readers see them; writers submit, cancel and run them (workers
    -- are writers).
    GRANT SELECT ON goalrt.goals, goalrt.goal_steps, goalrt.goal_types, goalrt.workers
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.schema_types(jsonb),
        goalrt.params_problem(jsonb, jsonb)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.register_goal_type(text, jsonb),
        goalrt.submit_goal(text, jsonb, jsonb),
        goalrt.submit_goals(jsonb),
        goalrt.cancel_goal(bigint, text),
        goalrt.register_worker_v1(text, text, text, integer, integer, text[], text[]),
        goalrt.deregister_worker_v1(text),
        goalrt.claim_goals_v1(text, integer, double precision, text[]),
        goalrt.plan_goals_v1(text, jsonb, double precision),
        goalrt.complete_steps_v1(text, jsonb, double precision),
        goalrt.fail_goals_v1(text, jsonb),
        goalrt.heartbeat_v1(text, bigint[], bigint[], double precision),
        goalrt.release_goals_v1(text, bigint[], bigint[])
        TO goalrt_writer, goalrt_admin;
    GRANT INSERT, UPDATE, DELETE ON goalrt.settings, goalrt.forks TO goalrt_admin;
END
$$;
