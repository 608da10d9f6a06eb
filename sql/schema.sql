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
-- Coordination
--
-- A step of a goal's plan is an action (run by a worker) or a wait, which
-- the database runs by itself:
--
--   kind      args                                          resumes when
--   event     {"event": TYPE, "where": {...}, "since"}      an event of TYPE whose data contains "where" is appended
--   sleep     {"seconds": N} or {"until": TIME}             the time comes
--   ask       {"prompt": TEXT, "schema": {...}}             goalrt.resume_goal supplies a valid answer
--   children  {"goals": [...], "mode": "all"|"any",         all (or the first of) its child goals end
--              "on_failure": "fail"|"continue"}
--
-- and any wait may carry {"timeout": SECONDS, "on_timeout": [steps]}: when
-- the time passes, the steps of on_timeout replace the rest of the plan, or
-- without them the goal fails with 'wait_timeout'.
--
-- A waiting goal has status 'waiting' and holds no lease and no worker slot.
-- What it waits for is matched in the transaction that makes it true: the
-- event's append (a trigger on event_data), the answer's resume_goal, the
-- last child's end. Times (sleeps, timeouts, delayed starts, retry
-- backoffs, limits' waits) are kept in goals.wake_at, outside the claim
-- index, and goalrt.wake_due_v1 (called by every claim) acts on those due.
--
-- Goals may have a deadline; when it passes the goal fails with
-- 'deadline_exceeded', its running action is told to stop (NOTIFY
-- goalrt_cancel) and its child goals are cancelled. Ending a goal in any
-- way cancels what is left of its subtree.
--
-- Limits (goalrt.limits) cap an action across the cluster: at most N running
-- at once and/or a token bucket of R per P seconds, for all calls or per
-- value of one argument (e.g. per customer). A step is admitted when it
-- starts; a goal whose step is not admitted is parked (goals.blocked_on,
-- wake_at) without a lease, and woken when a slot frees or a token is due.
-------------------------------------------------------------------------------

ALTER TABLE goalrt.goals
    -- When something is due: a delayed start or a retry's backoff (pending or
    -- active goals: not claimable before it), a sleep's end or a wait's
    -- timeout (waiting goals), the next try of a goal parked by a limit.
    ADD COLUMN wake_at     timestamptz,
    -- The limit that parked the goal: 'action|key_arg|key'.
    ADD COLUMN blocked_on  text,
    ADD COLUMN deadline_at timestamptz,
    -- The parent's step that started this goal (a children wait).
    ADD COLUMN parent_step integer;

ALTER TABLE goalrt.goal_steps
    ADD COLUMN kind  text NOT NULL DEFAULT 'action' CHECK (kind IN ('action', 'event', 'sleep', 'ask', 'children')),
    -- A name the step's result is known by (ctx.results in later steps).
    ADD COLUMN label text CHECK (label <> '' AND length(label) <= 200);

ALTER TABLE goalrt.workers
    -- The partitions a worker serves: buckets of partition_count (NULL: all).
    ADD COLUMN partitions      integer[],
    ADD COLUMN partition_count integer CHECK (partition_count > 0);

-- Runnable goals only: a goal with a wake_at is not due yet, however many
-- there are (10^6 timers do not lengthen the claim's walk).
DROP INDEX goalrt.goals_runnable_idx;
CREATE INDEX goals_runnable_idx ON goalrt.goals (priority DESC, run_at, id)
    WHERE status IN ('pending', 'active') AND wake_at IS NULL;
CREATE INDEX goals_wake_idx ON goalrt.goals (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX goals_deadline_idx ON goalrt.goals (deadline_at)
    WHERE deadline_at IS NOT NULL AND status IN ('pending', 'active', 'waiting');
CREATE INDEX goals_blocked_idx ON goalrt.goals (blocked_on, priority DESC, id) WHERE blocked_on IS NOT NULL;
-- A wait for an event looks back for one appended since its goal started.
CREATE INDEX event_data_type_idx ON goalrt.event_data (type, id);

-- Goals waiting for an event: what they wait for, matched by a trigger on
-- every append.
CREATE TABLE goalrt.goal_waits (
    goal_id    bigint      NOT NULL REFERENCES goalrt.goals (id),
    -- A wait whose "where" is a list of alternatives has a row for each.
    alt        integer     NOT NULL DEFAULT 0,
    seq        integer     NOT NULL,
    event_type text        NOT NULL,
    -- The event's data must contain this (jsonb @>).
    filter     jsonb       NOT NULL DEFAULT '{}',
    -- Only events with a larger id match (0: any).
    since_id   bigint      NOT NULL DEFAULT 0,
    match_key  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (goal_id, alt)
);
-- The first scalar field of the filter as 'key=value' (NULL: no such
-- field): an appended event looks up only the waits whose key its data has,
-- so 10^5 goals waiting for one type of event, each for its own order, cost
-- an append one index probe, not a scan of them all.
CREATE INDEX goal_waits_match_idx ON goalrt.goal_waits (event_type, match_key);

COMMENT ON TABLE goalrt.goal_waits IS 'Goals waiting for an event: its type and what its data must contain.';

-- Cluster-wide limits on actions. key_arg '' is one limit for all calls;
-- otherwise each value of the step's argument key_arg has its own.
CREATE TABLE goalrt.limits (
    action         text             NOT NULL CHECK (action <> '' AND length(action) <= 200),
    key_arg        text             NOT NULL DEFAULT '' CHECK (length(key_arg) <= 200),
    max_concurrent integer          CHECK (max_concurrent > 0),
    -- A token bucket: `rate` tokens every `per_seconds`, at most `burst`.
    rate           integer          CHECK (rate > 0),
    per_seconds    double precision CHECK (per_seconds > 0),
    burst          integer          CHECK (burst > 0),
    updated_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (action, key_arg),
    CONSTRAINT limits_something CHECK (max_concurrent IS NOT NULL OR rate IS NOT NULL),
    CONSTRAINT limits_rate_whole CHECK ((rate IS NULL) = (per_seconds IS NULL))
);

COMMENT ON TABLE goalrt.limits IS
    'Cluster-wide limits per action (and per value of one argument): concurrency and a token bucket.';

-- One row per limit and key in use: its lock (admissions of one key are
-- serialized on it) and its token bucket.
CREATE TABLE goalrt.limit_buckets (
    action      text             NOT NULL,
    key_arg     text             NOT NULL,
    key         text             NOT NULL,
    tokens      double precision NOT NULL,
    refilled_at timestamptz      NOT NULL,
    PRIMARY KEY (action, key_arg, key)
);

-- The steps holding a concurrency slot. A holder whose goal no longer runs
-- that step under that epoch (its worker died) is stale and is cleared by
-- the next admission of the same key.
CREATE TABLE goalrt.limit_holders (
    goal_id     bigint      NOT NULL,
    action      text        NOT NULL,
    key_arg     text        NOT NULL,
    key         text        NOT NULL,
    seq         integer     NOT NULL,
    epoch       bigint      NOT NULL,
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    acquired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (goal_id, action, key_arg)
);
CREATE INDEX limit_holders_key_idx ON goalrt.limit_holders (action, key_arg, key);

-- The internal functions below (release_limits, admit_step, insert_plan,
-- end_goal, advance_goal, finish_wait, child_ended) carry no SET clause:
-- they run only inside goalrt's functions, which set search_path,
-- enable_seqscan and jit for them, and a SET clause costs tens of
-- microseconds on every call.

-- pending -> failed too: a deadline can pass before any worker took the goal.
CREATE OR REPLACE FUNCTION goalrt.check_goal_transition() RETURNS trigger
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
                 WHEN 'pending' THEN ARRAY['active', 'failed', 'cancelled']
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

-- The first problem of a JSON value against a (small) JSON Schema, naming
-- the field as `label.field`, or NULL. params_problem is this for params.
CREATE FUNCTION goalrt.json_problem(spec jsonb, value jsonb, label text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    field text;
    item  jsonb;
    want  text[];
    got   text;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) <> 'object' THEN
        RETURN label || ' must be a JSON object';
    END IF;
    FOR field IN
        SELECT r FROM jsonb_array_elements_text(
                        CASE WHEN jsonb_typeof(spec -> 'required') = 'array' THEN spec -> 'required' ELSE '[]' END) AS r
         ORDER BY 1
    LOOP
        IF NOT value ? field THEN
            RETURN format('%s.%s is required', label, field);
        END IF;
    END LOOP;
    FOR field, item IN SELECT e.key, e.value FROM jsonb_each(value) AS e ORDER BY 1 LOOP
        IF NOT coalesce(spec -> 'properties', '{}') ? field THEN
            IF spec -> 'additionalProperties' = 'false'::jsonb THEN
                RETURN format('%s.%s is not a field (expected: %s)', label, field,
                              coalesce((SELECT string_agg(k, ', ' ORDER BY k)
                                          FROM jsonb_object_keys(spec -> 'properties') k), 'none'));
            END IF;
            CONTINUE;
        END IF;
        want := goalrt.schema_types(spec -> 'properties' -> field);
        got := jsonb_typeof(item);
        IF want IS NULL OR got = ANY (want)
           OR (got = 'number' AND 'integer' = ANY (want) AND item::numeric = trunc(item::numeric)) THEN
            CONTINUE;
        END IF;
        RETURN format('%s.%s must be %s, got %s', label, field, array_to_string(want, ' or '), got);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.params_problem(params_schema jsonb, params jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT replace(goalrt.json_problem(params_schema, params, 'params'), 'is not a field', 'is not a parameter')
$$;

-- The bucket (0..n-1) of a partition key among n: a stable hash, the one
-- PostgreSQL's hash partitioning uses.
CREATE FUNCTION goalrt.partition_of(partition_key text, n integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ((hashtextextended(partition_key, 0) & 9223372036854775807) % n)::integer
$$;

-- The 'key=value' texts of the scalar fields of a JSON object (numbers in
-- a canonical form, as jsonb @> compares them): what goal_waits.match_key
-- may be for a filter the object contains.
CREATE FUNCTION goalrt.match_keys(data jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(data) = 'object' THEN ARRAY(
        SELECT e.key || '=' || CASE jsonb_typeof(e.value) WHEN 'number' THEN trim_scale(e.value::numeric)::text
                                                          ELSE e.value::text END
          FROM jsonb_each(data) AS e
         WHERE jsonb_typeof(e.value) IN ('string', 'number', 'boolean', 'null')
         ORDER BY e.key)
    ELSE '{}'::text[] END
$$;

-- Which of 64 advisory locks guards the waits for an event type.
-- (Small helpers here carry no SET clause: a SET makes a function call cost
-- tens of microseconds and keeps SQL functions from being inlined; they use
-- only qualified names and built-ins, and internal ones run inside callers
-- that set search_path.)
CREATE FUNCTION goalrt.wait_lock_key(event_type text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (hashtext(event_type) & 63)
$$;

-- The first problem of a step as a plan gives it, or NULL.
CREATE FUNCTION goalrt.step_problem(step jsonb, label text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    kind text := coalesce(step ->> 'kind', 'action');
    a    jsonb := coalesce(step -> 'args', '{}');
    t    timestamptz;
    i    integer := 0;
    sub  jsonb;
    p    text;
BEGIN
    IF jsonb_typeof(step) IS DISTINCT FROM 'object' THEN
        RETURN label || ' must be an object {"action", "args"}';
    ELSIF kind NOT IN ('action', 'event', 'sleep', 'ask', 'children') THEN
        RETURN format('%s.kind %s is not a step kind (action, event, sleep, ask, children)', label, kind);
    ELSIF jsonb_typeof(step -> 'action') IS DISTINCT FROM 'string' OR step ->> 'action' = ''
          OR length(step ->> 'action') > 200 THEN
        RETURN label || '.action must be a non-empty string';
    ELSIF jsonb_typeof(a) <> 'object' AND kind <> 'action' THEN
        RETURN label || '.args must be an object';
    ELSIF step ? 'label' AND jsonb_typeof(step -> 'label') NOT IN ('string', 'null') THEN
        RETURN label || '.label must be a string';
    END IF;
    IF kind = 'action' THEN
        RETURN NULL;
    END IF;
    IF a ? 'timeout' AND (jsonb_typeof(a -> 'timeout') <> 'number' OR (a ->> 'timeout')::numeric < 0) THEN
        RETURN label || '.args.timeout must be a number of seconds >= 0';
    END IF;
    IF a ? 'on_timeout' THEN
        IF jsonb_typeof(a -> 'on_timeout') <> 'array' THEN
            RETURN label || '.args.on_timeout must be an array of steps';
        END IF;
        FOR sub IN SELECT e FROM jsonb_array_elements(a -> 'on_timeout') AS e LOOP
            p := goalrt.step_problem(sub, format('%s.args.on_timeout[%s]', label, i));
            IF p IS NOT NULL THEN
                RETURN p;
            END IF;
            i := i + 1;
        END LOOP;
    END IF;
    IF kind = 'event' THEN
        IF jsonb_typeof(a -> 'event') IS DISTINCT FROM 'string' OR a ->> 'event' = '' THEN
            RETURN label || '.args.event must be an event type';
        ELSIF a ->> 'event' ~ '^(goal|step)\.' THEN
            RETURN label || '.args.event: goalrt''s own goal.* and step.* events cannot be waited for '
                || '(wait for child goals instead)';
        ELSIF a ? 'where' AND jsonb_typeof(a -> 'where') <> 'object'
              AND NOT (jsonb_typeof(a -> 'where') = 'array' AND jsonb_array_length(a -> 'where') > 0
                       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(a -> 'where') f
                                        WHERE jsonb_typeof(f) <> 'object')) THEN
            RETURN label || '.args.where must be an object (the event data must contain it) or a list of them';
        ELSIF a ? 'since' AND coalesce(a ->> 'since', '') NOT IN ('submit', 'wait') THEN
            RETURN label || '.args.since must be "submit" or "wait"';
        END IF;
    ELSIF kind = 'sleep' THEN
        IF a ? 'seconds' = a ? 'until' THEN
            RETURN label || '.args: give seconds or until (one of them)';
        ELSIF a ? 'seconds' AND (jsonb_typeof(a -> 'seconds') <> 'number' OR (a ->> 'seconds')::numeric < 0) THEN
            RETURN label || '.args.seconds must be a number >= 0';
        ELSIF a ? 'until' THEN
            BEGIN
                t := (a ->> 'until')::timestamptz;
            EXCEPTION WHEN OTHERS THEN
                t := NULL;
            END;
            IF jsonb_typeof(a -> 'until') <> 'string' OR t IS NULL OR NOT isfinite(t) THEN
                RETURN label || '.args.until must be a time (ISO 8601)';
            END IF;
        END IF;
    ELSIF kind = 'ask' THEN
        IF jsonb_typeof(a -> 'prompt') IS DISTINCT FROM 'string' THEN
            RETURN label || '.args.prompt must be a string';
        ELSIF a ? 'schema' AND jsonb_typeof(a -> 'schema') <> 'object' THEN
            RETURN label || '.args.schema must be a JSON Schema object';
        END IF;
    ELSIF kind = 'children' THEN
        IF jsonb_typeof(a -> 'goals') IS DISTINCT FROM 'array' THEN
            RETURN label || '.args.goals must be an array of {"name", "params", "options"}';
        ELSIF coalesce(a ->> 'mode', 'all') NOT IN ('all', 'any') THEN
            RETURN label || '.args.mode must be "all" or "any"';
        ELSIF coalesce(a ->> 'on_failure', 'fail') NOT IN ('fail', 'continue') THEN
            RETURN label || '.args.on_failure must be "fail" or "continue"';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- Free the concurrency slots a goal holds, and wake one goal parked on each.
-- The bucket's row lock comes first: an admission parks goals while holding
-- it, so a release waits for that parking to commit and then sees the goal
-- to wake (without it, the parked goal would sleep with the slot free).
CREATE FUNCTION goalrt.release_limits(p_goal bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    h record;
    woken bigint;
BEGIN
    FOR h IN SELECT lh.action, lh.key_arg, lh.key FROM goalrt.limit_holders lh
              WHERE lh.goal_id = p_goal ORDER BY lh.action, lh.key_arg, lh.key
    LOOP
        PERFORM 1 FROM goalrt.limit_buckets lb
         WHERE lb.action = h.action AND lb.key_arg = h.key_arg AND lb.key = h.key FOR UPDATE;
        DELETE FROM goalrt.limit_holders lh
         WHERE lh.goal_id = p_goal AND lh.action = h.action AND lh.key_arg = h.key_arg;
        UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
         WHERE g.id = (SELECT b.id FROM goalrt.goals b
                        WHERE b.blocked_on = h.action || '|' || h.key_arg || '|' || h.key
                        ORDER BY b.priority DESC, b.id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING g.id INTO woken;
        IF woken IS NOT NULL THEN
            PERFORM pg_notify('goalrt_goals', '');
        END IF;
    END LOOP;
END
$$;

-- Admit the start of step p_seq (an action) of goal p_goal under lease epoch
-- p_epoch: take a slot and a token of every limit on the action. Returns NULL
-- when admitted; otherwise parks the goal (no lease, woken when a slot frees
-- or a token is due) and returns the blocking limit. The caller holds the
-- goal's row lock.
CREATE FUNCTION goalrt.admit_step(p_goal bigint, p_seq integer, p_action text, p_args jsonb, p_epoch bigint)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    l       goalrt.limits;
    b       goalrt.limit_buckets;
    k       text;
    n       integer;
    avail   double precision;
    now_at  timestamptz;
    wait_s  double precision;
    blocked text;
    taken   text[] := '{}';
BEGIN
    FOR l IN SELECT * FROM goalrt.limits li WHERE li.action = p_action ORDER BY li.key_arg LOOP
        k := CASE WHEN l.key_arg = '' THEN '' ELSE coalesce(p_args ->> l.key_arg, '') END;
        INSERT INTO goalrt.limit_buckets (action, key_arg, key, tokens, refilled_at)
        VALUES (l.action, l.key_arg, k, coalesce(l.burst, l.rate, 0), clock_timestamp())
        ON CONFLICT DO NOTHING;
        SELECT * INTO b FROM goalrt.limit_buckets lb
         WHERE lb.action = l.action AND lb.key_arg = l.key_arg AND lb.key = k FOR UPDATE;
        now_at := clock_timestamp();
        IF l.max_concurrent IS NOT NULL THEN
            -- Clear holders whose goal no longer runs that step under that
            -- lease (a killed worker's), except this transaction's own.
            DELETE FROM goalrt.limit_holders h
             WHERE h.action = l.action AND h.key_arg = l.key_arg AND h.key = k
               AND h.xid <> pg_current_xact_id()
               AND NOT EXISTS (SELECT 1 FROM goalrt.goals g
                                WHERE g.id = h.goal_id AND g.status = 'active' AND g.lease_epoch = h.epoch
                                  AND g.step_seq = h.seq AND g.lease_expires_at > now());
            SELECT count(*) INTO n FROM goalrt.limit_holders h
             WHERE h.action = l.action AND h.key_arg = l.key_arg AND h.key = k AND h.goal_id <> p_goal;
            IF n >= l.max_concurrent THEN
                blocked := l.action || '|' || l.key_arg || '|' || k;
                -- Woken by the release of a slot; the timer is the fallback
                -- for slots held by a worker that died.
                wait_s := 30;
                EXIT;
            END IF;
        END IF;
        IF l.rate IS NOT NULL THEN
            avail := least(coalesce(l.burst, l.rate)::double precision,
                            b.tokens + greatest(extract(epoch FROM now_at - b.refilled_at), 0)
                                       * l.rate / l.per_seconds);
            IF avail < 1 THEN
                UPDATE goalrt.limit_buckets lb SET tokens = avail, refilled_at = now_at
                 WHERE lb.action = l.action AND lb.key_arg = l.key_arg AND lb.key = k;
                blocked := l.action || '|' || l.key_arg || '|' || k;
                wait_s := (1 - avail) * l.per_seconds / l.rate;
                EXIT;
            END IF;
            UPDATE goalrt.limit_buckets lb SET tokens = avail - 1, refilled_at = now_at
             WHERE lb.action = l.action AND lb.key_arg = l.key_arg AND lb.key = k;
            taken := taken || (l.key_arg || '|' || k);
        END IF;
        IF l.max_concurrent IS NOT NULL THEN
            INSERT INTO goalrt.limit_holders AS h (goal_id, action, key_arg, key, seq, epoch)
            VALUES (p_goal, l.action, l.key_arg, k, p_seq, p_epoch)
            ON CONFLICT (goal_id, action, key_arg) DO UPDATE
               SET key = excluded.key, seq = excluded.seq, epoch = excluded.epoch, xid = excluded.xid,
                   acquired_at = excluded.acquired_at;
        END IF;
    END LOOP;
    IF blocked IS NULL THEN
        RETURN NULL;
    END IF;
    -- Not admitted: give back what the limits before the blocking one gave.
    UPDATE goalrt.limit_buckets lb SET tokens = lb.tokens + 1
     WHERE lb.action = p_action AND (lb.key_arg || '|' || lb.key) = ANY (taken);
    DELETE FROM goalrt.limit_holders h WHERE h.goal_id = p_goal AND h.action = p_action;
    UPDATE goalrt.goals g
       SET step_seq = p_seq, lease_owner = NULL, lease_expires_at = NULL, blocked_on = blocked,
           wake_at = clock_timestamp() + make_interval(secs => wait_s), updated_at = now()
     WHERE g.id = p_goal;
    RETURN blocked;
END
$$;

-- The next step to run after step p_seq of plan p_plan, or NULL.
CREATE FUNCTION goalrt.next_step(p_goal bigint, p_seq integer, p_plan integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT min(s.seq) FROM goalrt.goal_steps s
     WHERE s.goal_id = p_goal AND s.seq > p_seq AND s.status = 'pending' AND s.plan_no = p_plan
$$;

-- Replace what is left of a goal's plan with `steps` (a new plan) and
-- record goal.planned (with `reason` and the planner's `detail`). Returns
-- the first new step, NULL for an empty plan. The caller holds the goal's
-- row lock.
CREATE FUNCTION goalrt.insert_plan(p_goal bigint, steps jsonb, reason text, detail jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    g     goalrt.goals;
    first integer;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal;
    UPDATE goalrt.goal_steps st SET status = 'superseded'
     WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
    first := coalesce((SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id), 0) + 1;
    INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, kind, action, args, label)
    SELECT g.id, first + i::integer - 1, g.plan_no + 1, coalesce(s ->> 'kind', 'action'), s ->> 'action',
           coalesce(s -> 'args', '{}'), s ->> 'label'
      FROM jsonb_array_elements(steps) WITH ORDINALITY AS t(s, i);
    UPDATE goalrt.goals SET plan_no = g.plan_no + 1, step_seq = NULL, updated_at = now() WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.planned',
            jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'plan_no', g.plan_no + 1, 'first_seq', first,
                                                 'steps', steps, 'reason', reason, 'planner', detail)));
    RETURN CASE WHEN jsonb_array_length(steps) > 0 THEN first END;
END
$$;

-- End a goal: complete, failed or cancelled. Cancels its open steps, frees
-- its limits, records goal.<status>, tells a worker running it to stop,
-- cancels its unfinished child goals, and lets its parent know. Does
-- nothing to a goal already ended.
CREATE FUNCTION goalrt.end_goal(p_goal bigint, p_status text, p_result jsonb, p_error text, detail jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g goalrt.goals;
    c bigint;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal FOR UPDATE;
    IF NOT FOUND OR g.status IN ('complete', 'failed', 'cancelled') THEN
        RETURN;
    END IF;
    UPDATE goalrt.goal_steps st SET status = 'cancelled', finished_at = now()
     WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
    DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
    PERFORM goalrt.release_limits(g.id);
    IF p_status = 'complete' AND g.status = 'waiting' THEN
        UPDATE goalrt.goals SET status = 'active' WHERE goals.id = g.id;
    END IF;
    UPDATE goalrt.goals
       SET status = p_status, result = p_result, last_error = p_error, step_seq = NULL, lease_owner = NULL,
           lease_expires_at = NULL, wake_at = NULL, blocked_on = NULL, updated_at = now(), finished_at = now()
     WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id,
            CASE p_status WHEN 'complete' THEN 'goal.completed' ELSE 'goal.' || p_status END,
            CASE p_status
              WHEN 'complete' THEN jsonb_build_object('goal_id', g.id, 'result', p_result)
              ELSE jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'error', p_error))
            END || coalesce(detail, '{}'));
    IF g.lease_owner IS NOT NULL AND p_status <> 'complete' THEN
        PERFORM pg_notify('goalrt_cancel', g.id::text);
    END IF;
    FOR c IN SELECT k.id FROM goalrt.goals k
              WHERE k.parent_id = g.id AND k.status IN ('pending', 'active', 'waiting') ORDER BY k.id
    LOOP
        PERFORM goalrt.end_goal(c, 'cancelled', NULL, format('parent goal %s %s', g.id, p_status),
                                jsonb_build_object('reason', format('parent goal %s %s', g.id, p_status)));
    END LOOP;
    IF g.parent_id IS NOT NULL THEN
        PERFORM goalrt.child_ended(g.parent_id, g.id);
    END IF;
END
$$;

-- Move goal p_goal on to step p_next (NULL: none left, the goal completes
-- with p_result). An action step starts at once under the lease of
-- p_worker when given (and admitted by its limits), else it is left for
-- any worker to claim. A wait starts here: the goal waits without a lease,
-- or moves on at once when what it waits for is already there. Returns
-- 'continue', 'released', 'blocked', 'waiting' or 'complete'. The caller
-- holds the goal's row lock.
CREATE FUNCTION goalrt.advance_goal(
    p_goal bigint, p_next integer, p_worker text, lease_seconds double precision, p_result jsonb
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    g        goalrt.goals;
    s        goalrt.goal_steps;
    nxt      integer := p_next;
    res      jsonb := p_result;
    due      timestamptz;
    since    bigint;
    ev       record;
    kids     jsonb := '[]';
    alts     jsonb;
    child    jsonb;
    i        integer := 0;
    made     record;
BEGIN
    LOOP
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal;
        IF nxt IS NULL THEN
            PERFORM goalrt.end_goal(g.id, 'complete', res, NULL, NULL);
            RETURN 'complete';
        END IF;
        SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = nxt;
        IF s.kind = 'action' THEN
            IF p_worker IS NOT NULL AND g.lease_owner = p_worker THEN
                IF goalrt.admit_step(g.id, s.seq, s.action, s.args, g.lease_epoch) IS NOT NULL THEN
                    RETURN 'blocked';
                END IF;
                UPDATE goalrt.goal_steps st SET status = 'running', attempts = st.attempts + 1, started_at = now()
                 WHERE st.goal_id = g.id AND st.seq = s.seq;
                UPDATE goalrt.goals
                   SET step_seq = s.seq, updated_at = now(),
                       lease_expires_at = greatest(g.lease_expires_at, now() + make_interval(secs => lease_seconds))
                 WHERE goals.id = g.id;
                RETURN 'continue';
            END IF;
            UPDATE goalrt.goals
               SET status = 'active', step_seq = s.seq, lease_owner = NULL, lease_expires_at = NULL,
                   wake_at = NULL, blocked_on = NULL, updated_at = now()
             WHERE goals.id = g.id;
            -- Claimable now (a wait ended, or a draining worker left it): wake
            -- an idle worker rather than leave it to the next poll.
            PERFORM pg_notify('goalrt_goals', '');
            RETURN 'released';
        END IF;

        -- A wait. It may be over before it starts; then go on to the next step.
        UPDATE goalrt.goal_steps st SET status = 'running', attempts = st.attempts + 1, started_at = now()
         WHERE st.goal_id = g.id AND st.seq = s.seq;
        due := CASE WHEN s.args ? 'timeout' THEN now() + make_interval(secs => (s.args ->> 'timeout')::float8) END;
        res := NULL;
        IF s.kind = 'sleep' THEN
            due := coalesce((s.args ->> 'until')::timestamptz,
                            now() + make_interval(secs => (s.args ->> 'seconds')::float8));
            IF due <= now() THEN
                res := jsonb_build_object('slept_until', due);
            END IF;
        ELSIF s.kind = 'event' THEN
            -- Appenders of this event type hold this lock (shared) while they
            -- match waits; taking it exclusively waits for those in flight to
            -- commit, so an event is either seen here or sees this wait.
            PERFORM pg_advisory_xact_lock('goalrt.goal_waits'::regclass::oid::integer,
                                          goalrt.wait_lock_key(s.args ->> 'event'));
            since := 0;
            alts := CASE WHEN jsonb_typeof(s.args -> 'where') = 'array' THEN s.args -> 'where'
                         ELSE jsonb_build_array(coalesce(s.args -> 'where', '{}')) END;
            IF coalesce(s.args ->> 'since', 'submit') = 'submit' THEN
                SELECT min(e.id) INTO since FROM goalrt.event_data e
                 WHERE e.stream = 'goal:' || g.id AND e.type = 'goal.submitted';
                SELECT e.id, e.stream, e.type, e.data INTO ev FROM goalrt.event_data e
                 WHERE e.type = s.args ->> 'event' AND e.id > coalesce(since, 0)
                   AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
                 ORDER BY e.id LIMIT 1;
                IF FOUND THEN
                    res := jsonb_build_object('event', jsonb_build_object(
                               'id', ev.id, 'stream', ev.stream, 'type', ev.type, 'data', ev.data));
                END IF;
            END IF;
            IF res IS NULL THEN
                DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
                INSERT INTO goalrt.goal_waits (goal_id, alt, seq, event_type, filter, since_id, match_key)
                SELECT g.id, f.n::integer - 1, s.seq, s.args ->> 'event', f.v, coalesce(since, 0),
                       (goalrt.match_keys(f.v))[1]
                  FROM jsonb_array_elements(alts) WITH ORDINALITY AS f(v, n);
            END IF;
        ELSIF s.kind = 'children' THEN
            kids := '[]';
            i := 0;
            FOR child IN SELECT e FROM jsonb_array_elements(s.args -> 'goals') WITH ORDINALITY AS t(e, n) ORDER BY n LOOP
                SELECT * INTO made FROM goalrt.submit_one(
                    child ->> 'name', child -> 'params',
                    coalesce(child -> 'options', '{}') || jsonb_build_object('parent_id', g.id),
                    format('goal %s step %s: goals[%s]: ', g.id, s.seq, i));
                UPDATE goalrt.goals k SET parent_step = s.seq WHERE k.id = made.id AND k.parent_id = g.id;
                kids := kids || to_jsonb(made.id);
                i := i + 1;
            END LOOP;
            IF jsonb_array_length(kids) = 0 THEN
                res := jsonb_build_object('children', '[]'::jsonb);
            ELSE
                PERFORM pg_notify('goalrt_goals', '');
            END IF;
        END IF;

        IF res IS NOT NULL THEN
            UPDATE goalrt.goal_steps st SET status = 'complete', result = res, finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = s.seq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('goal:' || g.id, 'goal.resumed',
                    jsonb_build_object('goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'result', res, 'waited', false));
            nxt := goalrt.next_step(g.id, s.seq, g.plan_no);
            CONTINUE;
        END IF;
        UPDATE goalrt.goals
           SET status = 'waiting', step_seq = s.seq, lease_owner = NULL, lease_expires_at = NULL, wake_at = due,
               blocked_on = NULL, updated_at = now()
         WHERE goals.id = g.id;
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.waiting',
                jsonb_strip_nulls(jsonb_build_object(
                    'goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args, 'until', due,
                    'children', CASE WHEN s.kind = 'children' THEN kids END)));
        RETURN 'waiting';
    END LOOP;
END
$$;

-- End the wait of a waiting goal: with p_result (what it waited for), or
-- timed out. Then the goal moves on (see advance_goal). Returns the outcome,
-- or NULL when the goal was not waiting. Locks the goal.
CREATE FUNCTION goalrt.finish_wait(p_goal bigint, p_result jsonb, timed_out boolean, detail jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    g     goalrt.goals;
    s     goalrt.goal_steps;
    c     bigint;
    first integer;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal FOR UPDATE;
    IF NOT FOUND OR g.status <> 'waiting' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
    DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
    UPDATE goalrt.goals SET status = 'active', wake_at = NULL, updated_at = now() WHERE goals.id = g.id;
    IF NOT timed_out THEN
        UPDATE goalrt.goal_steps st SET status = 'complete', result = p_result, finished_at = now()
         WHERE st.goal_id = g.id AND st.seq = s.seq;
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.resumed',
                jsonb_build_object('goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'result', p_result, 'waited', true)
                || coalesce(detail, '{}'));
        RETURN goalrt.advance_goal(g.id, goalrt.next_step(g.id, s.seq, g.plan_no), NULL, NULL, p_result);
    END IF;

    UPDATE goalrt.goal_steps st SET status = 'failed', error = 'wait_timeout', finished_at = now()
     WHERE st.goal_id = g.id AND st.seq = s.seq;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.wait_timeout',
            jsonb_build_object('goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args));
    -- Child goals of a children wait that timed out are no longer wanted.
    FOR c IN SELECT k.id FROM goalrt.goals k
              WHERE k.parent_id = g.id AND k.parent_step = s.seq AND k.status IN ('pending', 'active', 'waiting')
              ORDER BY k.id
    LOOP
        PERFORM goalrt.end_goal(c, 'cancelled', NULL, 'the parent''s wait timed out',
                                jsonb_build_object('reason', 'the parent''s wait timed out'));
    END LOOP;
    IF jsonb_typeof(s.args -> 'on_timeout') = 'array' AND jsonb_array_length(s.args -> 'on_timeout') > 0 THEN
        first := goalrt.insert_plan(g.id, s.args -> 'on_timeout', 'wait_timeout', NULL);
        RETURN goalrt.advance_goal(g.id, first, NULL, NULL, NULL);
    END IF;
    PERFORM goalrt.end_goal(
        g.id, 'failed', NULL,
        format('wait_timeout: step %s (%s %s) timed out after %ss', s.seq, s.kind, s.action, s.args ->> 'timeout'),
        jsonb_build_object('seq', s.seq));
    RETURN 'failed';
END
$$;

-- A child goal ended: the parent waiting for its children moves on when
-- all of them (mode all) or the first to complete (mode any) have ended; a
-- failed or cancelled child fails the parent unless on_failure is
-- 'continue'. Locks the parent.
CREATE FUNCTION goalrt.child_ended(p_parent bigint, p_child bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p        goalrt.goals;
    s        goalrt.goal_steps;
    c        goalrt.goals;
    mode     text;
    open_n   integer;
    done_n   integer;
    kids     jsonb;
    sib      bigint;
BEGIN
    SELECT * INTO p FROM goalrt.goals WHERE goals.id = p_parent FOR UPDATE;
    IF NOT FOUND OR p.status <> 'waiting' THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = p.id AND st.seq = p.step_seq;
    SELECT * INTO c FROM goalrt.goals WHERE goals.id = p_child;
    IF s.kind <> 'children' OR c.parent_step IS DISTINCT FROM s.seq THEN
        RETURN;
    END IF;
    mode := coalesce(s.args ->> 'mode', 'all');
    SELECT count(*) FILTER (WHERE k.status IN ('pending', 'active', 'waiting')),
           count(*) FILTER (WHERE k.status = 'complete')
      INTO open_n, done_n
      FROM goalrt.goals k WHERE k.parent_id = p.id AND k.parent_step = s.seq;
    IF c.status <> 'complete' AND coalesce(s.args ->> 'on_failure', 'fail') = 'fail'
       AND (mode = 'all' OR (open_n = 0 AND done_n = 0)) THEN
        PERFORM goalrt.end_goal(
            p.id, 'failed', NULL,
            format('child goal %s (%s) %s: %s', c.id, c.name, c.status, coalesce(c.last_error, c.status)),
            jsonb_build_object('seq', s.seq, 'child', c.id));
        RETURN;
    END IF;
    IF open_n = 0 OR (mode = 'any' AND c.status = 'complete') THEN
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                   'id', k.id, 'name', k.name, 'status', k.status, 'result', k.result, 'error', k.last_error))
                   ORDER BY k.id)
          INTO kids
          FROM goalrt.goals k WHERE k.parent_id = p.id AND k.parent_step = s.seq;
        PERFORM goalrt.finish_wait(p.id, jsonb_build_object('children', kids, 'first', c.id), false,
                                   jsonb_build_object('child', c.id));
        FOR sib IN SELECT k.id FROM goalrt.goals k
                    WHERE k.parent_id = p.id AND k.parent_step = s.seq AND k.status IN ('pending', 'active', 'waiting')
                    ORDER BY k.id
        LOOP
            PERFORM goalrt.end_goal(sib, 'cancelled', NULL, format('child goal %s completed first', c.id),
                                    jsonb_build_object('reason', format('child goal %s completed first', c.id)));
        END LOOP;
    END IF;
END
$$;

-- Match events just appended (ids, of the given types) against the goals
-- waiting for them, in the appending transaction, so a wakeup never
-- depends on a notification. append_event, append_events, change_state
-- (state.changed) and the events a step emits call it; goalrt's own goal.*
-- and step.* events are not matched (waiting for them is refused).
-- The shared lock per event type, taken after the insert, pairs with the
-- exclusive one a goal takes before it looks back for an event: one of the
-- two always sees the other.
CREATE FUNCTION goalrt.match_appended(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    k integer;
    m record;
BEGIN
    FOREACH k IN ARRAY ARRAY(SELECT DISTINCT goalrt.wait_lock_key(t) FROM unnest(types) AS t ORDER BY 1) LOOP
        PERFORM pg_advisory_xact_lock_shared('goalrt.goal_waits'::regclass::oid::integer, k);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM goalrt.goal_waits w WHERE w.event_type = ANY (types)) THEN
        RETURN;
    END IF;
    FOR m IN
        SELECT DISTINCT ON (w.goal_id) w.goal_id, n.id, n.stream, n.type, n.data
          FROM goalrt.event_data n
          CROSS JOIN LATERAL (
              SELECT w0.goal_id, w0.since_id, w0.filter FROM goalrt.goal_waits w0
               WHERE w0.event_type = n.type AND w0.match_key IS NULL
              UNION ALL
              SELECT w1.goal_id, w1.since_id, w1.filter FROM goalrt.goal_waits w1
               WHERE w1.event_type = n.type AND w1.match_key = ANY (goalrt.match_keys(n.data))
          ) w
         WHERE n.id = ANY (ids) AND n.id > w.since_id AND (w.filter = '{}' OR n.data @> w.filter)
         ORDER BY w.goal_id, n.id
    LOOP
        PERFORM goalrt.finish_wait(
            m.goal_id,
            jsonb_build_object('event', jsonb_build_object('id', m.id, 'stream', m.stream, 'type', m.type,
                                                           'data', m.data)),
            false, NULL);
    END LOOP;
END
$$;

-- Appends match waits (see match_appended).
CREATE OR REPLACE FUNCTION goalrt.append_event(
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
    PERFORM goalrt.match_appended(ARRAY[append_event.type], ARRAY[new_id]);
    RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.append_events(events jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    bad   record;
    ids   bigint[];
    types text[];
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

    WITH ins AS (
        INSERT INTO goalrt.event_data (stream, type, data, metadata)
        SELECT x ->> 'stream', x ->> 'type',
               coalesce(x -> 'data', '{}'::jsonb),
               coalesce(nullif(x -> 'metadata', 'null'::jsonb), '{}'::jsonb)
          FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i)
         ORDER BY i
        RETURNING event_data.id, event_data.type
    )
    SELECT array_agg(ins.id ORDER BY ins.id), array_agg(DISTINCT ins.type) INTO ids, types FROM ins;
    PERFORM goalrt.match_appended(types, ids);
    -- Ids in the order of the array (the insert's order).
    RETURN QUERY SELECT u FROM unnest(ids) AS u;
END
$$;

-- change_state's state.changed matches waits too (maintained goals watch paths).
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
END
$$;

-- Act on what is due, at most max_count of each kind: delayed goals and
-- parked ones become claimable, sleeps end, waits time out, deadlines fail
-- their goals. Every claim calls this first; returns how many it handled.
CREATE FUNCTION goalrt.wake_due_v1(max_count integer DEFAULT 100) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    r     record;
    n     integer := 0;
    woken integer;
BEGIN
    WITH due AS (
        SELECT g.id FROM goalrt.goals g
         WHERE g.wake_at <= now() AND g.status IN ('pending', 'active')
         ORDER BY g.wake_at LIMIT max_count
           FOR UPDATE SKIP LOCKED
    )
    UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL FROM due WHERE g.id = due.id;
    GET DIAGNOSTICS woken = ROW_COUNT;
    n := n + woken;
    FOR r IN SELECT g.id, g.wake_at, s.kind
               FROM goalrt.goals g
               JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
              WHERE g.wake_at <= now() AND g.status = 'waiting'
              ORDER BY g.wake_at LIMIT max_count
                FOR UPDATE OF g SKIP LOCKED
    LOOP
        IF r.kind = 'sleep' THEN
            PERFORM goalrt.finish_wait(r.id, jsonb_build_object('slept_until', r.wake_at), false, NULL);
        ELSE
            PERFORM goalrt.finish_wait(r.id, NULL, true, NULL);
        END IF;
        n := n + 1;
    END LOOP;
    FOR r IN SELECT g.id, g.deadline_at FROM goalrt.goals g
              WHERE g.deadline_at <= now() AND g.status IN ('pending', 'active', 'waiting')
              ORDER BY g.deadline_at LIMIT max_count
                FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM goalrt.end_goal(r.id, 'failed', NULL, 'deadline_exceeded: the deadline ' || r.deadline_at || ' passed',
                                jsonb_build_object('deadline', r.deadline_at));
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
    RETURN n;
END
$$;

COMMENT ON FUNCTION goalrt.wake_due_v1(integer) IS
    'Act on due times: delayed and parked goals become claimable, sleeps end, waits time out, deadlines fail goals.';

-- Functions that set enable_seqscan = off also turn JIT off: on PostgreSQL
-- 15 a disabled plan's cost passes jit_above_cost, and compiling it took
-- ~140 ms per call (found by bench/coordination_bench.py).
ALTER FUNCTION goalrt.heartbeat_v1(text, bigint[], bigint[], double precision) SET jit = off;

-- Answer a goal waiting at an ask step: data must satisfy the step's
-- schema (else GR008 naming the field, and the goal keeps waiting).
CREATE FUNCTION goalrt.resume_goal(goal_id bigint, data jsonb, actor text DEFAULT NULL)
RETURNS TABLE (id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    g       goalrt.goals;
    s       goalrt.goal_steps;
    problem text;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = resume_goal.goal_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal % does not exist', coalesce(resume_goal.goal_id::text, 'NULL') USING ERRCODE = 'GR009';
    END IF;
    SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
    IF g.status <> 'waiting' OR s.kind IS DISTINCT FROM 'ask' THEN
        RAISE EXCEPTION 'goal % is not waiting for an answer (%)', g.id,
            CASE WHEN g.status <> 'waiting' THEN 'it is ' || g.status
                 ELSE format('it waits for %s %s', s.kind, s.action) END
            USING ERRCODE = 'GR007';
    END IF;
    problem := goalrt.json_problem(coalesce(s.args -> 'schema', '{}'), data, 'data');
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'invalid answer for goal %: %', g.id, problem USING ERRCODE = 'GR008';
    END IF;
    RETURN QUERY SELECT g.id, goalrt.finish_wait(g.id, data, false, jsonb_strip_nulls(jsonb_build_object('by', actor)));
END
$$;

COMMENT ON FUNCTION goalrt.resume_goal(bigint, jsonb, text) IS
    'Answer a goal waiting at an ask step; the answer is checked against the step''s schema.';

-- Set (or replace) a cluster-wide limit on an action. options:
--   concurrency  at most this many steps of the action running at once
--   rate, per    a token bucket: rate starts every per seconds (per: 1)
--   burst        the bucket's size (default rate)
--   key          the argument whose values each get their own limit
CREATE FUNCTION goalrt.set_limit(action text, options jsonb)
RETURNS SETOF goalrt.limits
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    o   jsonb := coalesce(options, '{}');
    bad text;
    f   text;
BEGIN
    IF action IS NULL OR action !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$' THEN
        RAISE EXCEPTION 'invalid action name %', coalesce(quote_literal(action), 'NULL') USING ERRCODE = 'GR008';
    END IF;
    IF jsonb_typeof(o) <> 'object' THEN
        RAISE EXCEPTION 'limit options must be a JSON object' USING ERRCODE = 'GR008';
    END IF;
    SELECT min(k) INTO bad FROM jsonb_object_keys(o) k WHERE k NOT IN ('concurrency', 'rate', 'per', 'burst', 'key');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'limit option % is not an option (concurrency, rate, per, burst, key)', bad
            USING ERRCODE = 'GR008';
    END IF;
    FOREACH f IN ARRAY ARRAY['concurrency', 'rate', 'burst'] LOOP
        IF o ? f AND (jsonb_typeof(o -> f) <> 'number' OR (o ->> f) !~ '^[0-9]{1,9}$' OR (o ->> f)::integer < 1) THEN
            RAISE EXCEPTION 'limit option % must be an integer >= 1', f USING ERRCODE = 'GR008';
        END IF;
    END LOOP;
    IF o ? 'per' AND (jsonb_typeof(o -> 'per') <> 'number' OR (o ->> 'per')::numeric <= 0) THEN
        RAISE EXCEPTION 'limit option per must be a number of seconds > 0' USING ERRCODE = 'GR008';
    END IF;
    IF (o ? 'per' OR o ? 'burst') AND NOT o ? 'rate' THEN
        RAISE EXCEPTION 'limit options per and burst need rate' USING ERRCODE = 'GR008';
    END IF;
    IF NOT (o ? 'concurrency' OR o ? 'rate') THEN
        RAISE EXCEPTION 'a limit needs concurrency or rate' USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'key' AND (jsonb_typeof(o -> 'key') <> 'string' OR o ->> 'key' = '') THEN
        RAISE EXCEPTION 'limit option key must be the name of an argument of the action' USING ERRCODE = 'GR008';
    END IF;
    RETURN QUERY
    INSERT INTO goalrt.limits AS l (action, key_arg, max_concurrent, rate, per_seconds, burst)
    VALUES (set_limit.action, coalesce(o ->> 'key', ''), (o ->> 'concurrency')::integer, (o ->> 'rate')::integer,
            CASE WHEN o ? 'rate' THEN coalesce((o ->> 'per')::double precision, 1) END, (o ->> 'burst')::integer)
    ON CONFLICT ON CONSTRAINT limits_pkey DO UPDATE
       SET max_concurrent = excluded.max_concurrent, rate = excluded.rate, per_seconds = excluded.per_seconds,
           burst = excluded.burst, updated_at = now()
    RETURNING l.*;
    -- A changed bucket starts full again, and goals the old limit parked try again.
    DELETE FROM goalrt.limit_buckets b WHERE b.action = set_limit.action AND b.key_arg = coalesce(o ->> 'key', '');
    UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
     WHERE g.blocked_on IS NOT NULL
       AND left(g.blocked_on, length(set_limit.action || '|' || coalesce(o ->> 'key', '') || '|'))
           = set_limit.action || '|' || coalesce(o ->> 'key', '') || '|';
    PERFORM pg_notify('goalrt_goals', '');
END
$$;

COMMENT ON FUNCTION goalrt.set_limit(text, jsonb) IS
    'Set a cluster-wide limit on an action: {"concurrency", "rate", "per", "burst", "key"}.';

CREATE FUNCTION goalrt.drop_limit(action text, key_arg text DEFAULT '') RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    b text;
BEGIN
    DELETE FROM goalrt.limits l WHERE l.action = drop_limit.action AND l.key_arg = coalesce(drop_limit.key_arg, '');
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM goalrt.limit_buckets lb WHERE lb.action = drop_limit.action AND lb.key_arg = coalesce(drop_limit.key_arg, '');
    DELETE FROM goalrt.limit_holders h WHERE h.action = drop_limit.action AND h.key_arg = coalesce(drop_limit.key_arg, '');
    -- Goals it parked may run now.
    b := drop_limit.action || '|' || coalesce(drop_limit.key_arg, '') || '|';
    UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
     WHERE g.blocked_on IS NOT NULL AND left(g.blocked_on, length(b)) = b;
    PERFORM pg_notify('goalrt_goals', '');
    RETURN true;
END
$$;

-- The goal and its descendants, depth first in id order.
CREATE FUNCTION goalrt.goal_tree(goal_id bigint)
RETURNS TABLE (id bigint, parent_id bigint, depth integer, name text, status text, step_seq integer,
               result jsonb, last_error text)
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    WITH RECURSIVE tree AS (
        SELECT g.id, g.parent_id, 0 AS depth, ARRAY[g.id] AS path
          FROM goalrt.goals g WHERE g.id = goal_tree.goal_id
        UNION ALL
        SELECT k.id, k.parent_id, t.depth + 1, t.path || k.id
          FROM goalrt.goals k JOIN tree t ON k.parent_id = t.id
    )
    SELECT t.id, t.parent_id, t.depth, g.name, g.status, g.step_seq, g.result, g.last_error
      FROM tree t JOIN goalrt.goals g ON g.id = t.id
     ORDER BY t.path
$$;

-- Goals that wait, with what for.
CREATE VIEW goalrt.waiting_goals AS
SELECT g.id, g.name, s.seq, s.kind, s.action, s.args, g.wake_at AS timeout_at, s.started_at AS waiting_since,
       (SELECT count(*) FROM goalrt.goals k WHERE k.parent_id = g.id AND k.parent_step = s.seq
           AND k.status IN ('pending', 'active', 'waiting')) AS open_children
  FROM goalrt.goals g
  JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
 WHERE g.status = 'waiting';

COMMENT ON VIEW goalrt.waiting_goals IS 'Each waiting goal and what it waits for (an event, a time, an answer, children).';

-- Submit one goal; options as in 0003, and deadline: a time (ISO 8601) or
-- seconds from now after which the goal fails with deadline_exceeded.
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
                'run_at', start_at, 'key', gkey, 'parent_id', parent, 'partition_key', o ->> 'partition_key',
                'deadline', deadline)));
    RETURN QUERY SELECT new_id, true;
END
$$;

-- Cancel a goal that has not finished, and its unfinished child goals. A
-- worker running one of their steps learns it from the goalrt_cancel
-- notification (or its next heartbeat), and its result is refused.
CREATE OR REPLACE FUNCTION goalrt.cancel_goal(goal_id bigint, reason text DEFAULT NULL)
RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
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
    PERFORM goalrt.end_goal(g.id, 'cancelled', NULL, coalesce(reason, 'cancelled'),
                            jsonb_strip_nulls(jsonb_build_object('reason', reason, 'from', g.status,
                                                                 'step', g.step_seq, 'worker', g.lease_owner)));
    RETURN QUERY SELECT g.id, 'cancelled'::text;
END
$$;

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

CREATE OR REPLACE FUNCTION goalrt.register_worker_v1(
    worker_id text, name text, hostname text, pid integer, concurrency integer, goal_types text[], actions text[]
) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT goalrt.register_worker_v2(worker_id, name, hostname, pid, concurrency, goal_types, actions, NULL, NULL);
$$;

-- Claim up to max_count runnable goals for a worker, in claim order
-- (priority DESC, run_at, id), skipping rows other claimers hold. A
-- runnable goal is pending or active, due (no wake_at), and not leased (or
-- its lease expired: its worker died or stalled, and this claim takes it
-- over). Each claim increments the lease epoch, counts an attempt of the
-- goal's current step and marks it running. Returns the claimed goals with
-- the step to run (step_seq NULL: the goal has no plan yet).
--
-- First acts on what is due (wake_due_v1). A step of a limited action must
-- be admitted (admit_step); a goal that is not is parked instead of
-- claimed. A worker given partitions (buckets of partition_count) takes
-- goals of those partitions and goals without a partition key; a worker
-- without takes the rest, and a served partition's goals too once they
-- have waited takeover_seconds (so nothing starves if its worker is gone).
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
           FOR UPDATE SKIP LOCKED
    ) p;
    IF ids IS NULL THEN
        RETURN;
    END IF;
    -- Steps of limited actions start only when admitted.
    FOR cand IN SELECT g.id, g.step_seq, s.action, s.args, g.lease_epoch
               FROM goalrt.goals g
               JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
              WHERE g.id = ANY (ids) AND s.kind = 'action'
                AND EXISTS (SELECT 1 FROM goalrt.limits l WHERE l.action = s.action)
              ORDER BY g.priority DESC, g.run_at, g.id
    LOOP
        IF goalrt.admit_step(cand.id, cand.step_seq, cand.action, cand.args, cand.lease_epoch + 1) IS NOT NULL THEN
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

COMMENT ON FUNCTION goalrt.claim_goals_v2(text, integer, double precision, text[], integer[], integer, double precision) IS
    'Claim runnable goals in (priority DESC, run_at, id) order with SKIP LOCKED, honouring limits and partitions.';

CREATE OR REPLACE FUNCTION goalrt.claim_goals_v1(
    worker_id text, max_count integer, lease_seconds double precision, goal_types text[] DEFAULT NULL
) RETURNS TABLE (
    goal_id bigint, name text, params jsonb, epoch bigint, plan_no integer, step_seq integer,
    action text, args jsonb, attempt integer
)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT * FROM goalrt.claim_goals_v2(worker_id, max_count, lease_seconds, goal_types, NULL, NULL, 10);
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
CREATE OR REPLACE FUNCTION goalrt.plan_goals_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    x       jsonb;
    g       goalrt.goals;
    ep      bigint;
    first   integer;
    cur     goalrt.goal_steps;
    problem text;
BEGIN
    IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    FOR x IN SELECT e FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, i) ORDER BY (e ->> 'goal_id')::bigint
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
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = goal_id FOR UPDATE;
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

-- Record the outcome of steps run by a worker, each in its own right and
-- only while the worker still holds the goal's lease at that epoch. items is
-- a JSON array of
--   {"goal_id", "epoch", "seq", "outcome": "complete" | "retry" | "fail" | "replan",
--    "result", "changes" (a change set for goalrt.change_state), "events"
--    ([{"type", "data"}] appended to the goal's stream), "error",
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
--   'already_applied' this exact result was applied before (a retried commit)
--   'refused'         the lease was lost: nothing applied, step.result_refused recorded
--   'change_refused'  the state change was refused (error says why): nothing applied
CREATE OR REPLACE FUNCTION goalrt.complete_steps_v1(worker_id text, items jsonb, lease_seconds double precision)
RETURNS TABLE (
    goal_id bigint, outcome text, step_seq integer, action text, args jsonb, attempt integer, error text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    x       jsonb;
    g       goalrt.goals;
    s       goalrt.goal_steps;
    ep      bigint;
    sq      integer;
    nxt      goalrt.goal_steps;
    stream   text;
    delay    double precision;
    ev_ids   bigint[];
    ev_types text[];
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
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.completed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'epoch', ep, 'worker', worker_id, 'result', x -> 'result'));
            PERFORM goalrt.release_limits(g.id);
            outcome := goalrt.advance_goal(
                g.id, goalrt.next_step(g.id, sq, g.plan_no),
                CASE WHEN coalesce((x ->> 'continue')::boolean, false) THEN worker_id END,
                lease_seconds, x -> 'result');
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
                                       'error', x ->> 'error', 'final', true, 'replanned', true));
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
                                       'error', x ->> 'error', 'retry_in', delay, 'final', false));
            outcome := 'retry';
        ELSE
            UPDATE goalrt.goal_steps st SET status = 'failed', error = x ->> 'error', finished_at = now()
             WHERE st.goal_id = g.id AND st.seq = sq;
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES (stream, 'step.failed',
                    jsonb_build_object('goal_id', g.id, 'seq', sq, 'action', s.action, 'attempt', s.attempts,
                                       'error', x ->> 'error', 'final', true));
            PERFORM goalrt.end_goal(g.id, 'failed', NULL, x ->> 'error', jsonb_build_object('seq', sq));
            outcome := 'failed';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Fail goals a worker holds before any step runs (invalid params, a plan
-- that cannot be made): [{"goal_id", "epoch", "error"}]. Returns the goals
-- failed; others (lease lost) are left alone.
CREATE OR REPLACE FUNCTION goalrt.fail_goals_v1(worker_id text, items jsonb)
RETURNS TABLE (goal_id bigint, outcome text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
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
        PERFORM goalrt.end_goal(g.id, 'failed', NULL, x ->> 'error', NULL);
        outcome := 'failed';
        RETURN NEXT;
    END LOOP;
END
$$;

-- Give back leases a worker holds but will not finish (it is shutting
-- down): the goals become claimable at once, the interrupted step's
-- attempt does not count, and its limit slots are freed. Returns the goals
-- released.
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
           FOR UPDATE OF g
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
        PERFORM goalrt.release_limits(r) FROM unnest(released) AS r;
        PERFORM pg_notify('goalrt_goals', '');
        RETURN QUERY SELECT r FROM unnest(released) AS r;
    END IF;
END
$$;

-------------------------------------------------------------------------------
-- GDL definitions in the database (migration 0005).
--
-- `goalrt gdl load` stores a workspace's compiled definitions here, one row
-- per version (a new version only when the content hash changes), and
-- installs what the database itself enforces or runs:
--
--   gdl_versions   every loaded version: workspace, content hash, the
--                  compiled JSON (what workers plan with)
--   gdl_policies   the current version's policies, checked by change_state
--                  after every change: a change that breaks one is refused
--                  (SQLSTATE GR003, message "policy_violation: ...") and
--                  nothing of it is applied
--   gdl_triggers   the current version's `on event` triggers: an appended
--                  event of the type submits the goal in the same transaction
--   goal_types.defaults   a GDL goal's priority and deadline, applied at
--                  submit unless the submit gives its own
--
-- Which version a goal runs: a plan is data (its steps are rows), so steps
-- already planned run as recorded whatever is loaded later; every plan a
-- worker makes (first plan or re-plan) uses the newest version the worker
-- has seen, and goal.planned records it as detail.gdl_version.

CREATE TABLE goalrt.gdl_versions (
    version      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace    text NOT NULL CHECK (workspace <> ''),
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    definitions  jsonb NOT NULL CHECK (jsonb_typeof(definitions) = 'object'),
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    loaded_by    text NOT NULL DEFAULT current_user
);

COMMENT ON TABLE goalrt.gdl_versions IS
    'GDL definitions loaded with `goalrt gdl load`: one row per version, the newest is current.';

CREATE TABLE goalrt.gdl_policies (
    name      text PRIMARY KEY,
    app       text NOT NULL,
    version   bigint NOT NULL REFERENCES goalrt.gdl_versions (version),
    -- The condition as the planner's JSON, wildcards as {_1}, {_2}, ...
    condition jsonb NOT NULL,
    -- The source text, for messages: orders.*.amount > 0
    text      text NOT NULL,
    -- Wildcard variable -> the prefix whose keys it ranges over: {"_1": "orders"}
    wildcards jsonb NOT NULL DEFAULT '{}',
    -- Which changed paths concern the policy: [{"regex": ..., "vars": ["_1"]}]; each
    -- capture group of a regex binds the variable at the same place in vars.
    reads     jsonb NOT NULL
);

COMMENT ON TABLE goalrt.gdl_policies IS
    'The current GDL policies: every change_state checks those its paths concern.';

CREATE TABLE goalrt.gdl_triggers (
    event_type text NOT NULL,
    goal_name  text NOT NULL,
    version    bigint NOT NULL REFERENCES goalrt.gdl_versions (version),
    -- param -> {"field": NAME} (from the event's data) or {"value": CONST}
    params     jsonb NOT NULL,
    PRIMARY KEY (event_type, goal_name)
);

COMMENT ON TABLE goalrt.gdl_triggers IS
    'The current GDL `on event` triggers: an appended event of event_type submits goal_name.';

ALTER TABLE goalrt.goal_types ADD COLUMN defaults jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(defaults) = 'object');

COMMENT ON COLUMN goalrt.goal_types.defaults IS
    'Submit options a goal of this type gets unless its submit gives them (GDL priority and deadline).';

-- The value of a policy term: a path (holes bound by b), a bound variable or
-- a constant. NULL stands for absent: a missing or deleted path, or a value
-- that is not a scalar (the planner reasons about scalars only).
CREATE FUNCTION goalrt.policy_term(t jsonb, b jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    p text;
    k text;
    v jsonb;
BEGIN
    IF jsonb_typeof(t) <> 'object' THEN
        RETURN t;
    END IF;
    IF t ? 'var' THEN
        RETURN b -> (t ->> 'var');
    END IF;
    p := t ->> 'path';
    FOR k IN SELECT jsonb_object_keys(b) LOOP
        p := replace(p, '{' || k || '}', b ->> k);
    END LOOP;
    SELECT s.value INTO v FROM goalrt.state_data s WHERE s.path = p;
    IF v IS NULL OR jsonb_typeof(v) IN ('object', 'array') THEN
        RETURN NULL;
    END IF;
    RETURN v;
END
$$;

-- Whether a condition (the planner's JSON) holds on the current state, with
-- the same meaning as goalrt.planner: an absent value equals nothing (so !=
-- holds), ordering holds only between two numbers or two strings.
CREATE FUNCTION goalrt.policy_holds(c jsonb, b jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    op  text := c ->> 'op';
    l   jsonb;
    r   jsonb;
    arg jsonb;
BEGIN
    IF op = 'and' THEN
        FOR arg IN SELECT jsonb_array_elements(c -> 'args') LOOP
            IF NOT goalrt.policy_holds(arg, b) THEN
                RETURN false;
            END IF;
        END LOOP;
        RETURN true;
    ELSIF op = 'or' THEN
        FOR arg IN SELECT jsonb_array_elements(c -> 'args') LOOP
            IF goalrt.policy_holds(arg, b) THEN
                RETURN true;
            END IF;
        END LOOP;
        RETURN false;
    ELSIF op = 'not' THEN
        RETURN NOT goalrt.policy_holds(c -> 'arg', b);
    ELSIF op = 'exists' THEN
        RETURN goalrt.policy_term(jsonb_build_object('path', c ->> 'path'), b) IS NOT NULL;
    ELSIF op = 'in' THEN
        l := goalrt.policy_term(c -> 'left', b);
        FOR arg IN SELECT jsonb_array_elements(c -> 'values') LOOP
            r := goalrt.policy_term(arg, b);
            IF l IS NOT NULL AND r IS NOT NULL AND goalrt.policy_equal(l, r) THEN
                RETURN true;
            END IF;
        END LOOP;
        RETURN false;
    END IF;
    l := goalrt.policy_term(c -> 'left', b);
    r := goalrt.policy_term(c -> 'right', b);
    IF op = '==' THEN
        RETURN l IS NOT NULL AND r IS NOT NULL AND goalrt.policy_equal(l, r);
    ELSIF op = '!=' THEN
        RETURN NOT (l IS NOT NULL AND r IS NOT NULL AND goalrt.policy_equal(l, r));
    END IF;
    IF l IS NULL OR r IS NULL THEN
        RETURN false;
    END IF;
    IF jsonb_typeof(l) = 'number' AND jsonb_typeof(r) = 'number' THEN
        RETURN CASE op WHEN '<' THEN l::numeric < r::numeric WHEN '<=' THEN l::numeric <= r::numeric
                       WHEN '>' THEN l::numeric > r::numeric ELSE l::numeric >= r::numeric END;
    ELSIF jsonb_typeof(l) = 'string' AND jsonb_typeof(r) = 'string' THEN
        -- Code point order, as Python compares strings.
        RETURN CASE op WHEN '<' THEN (l ->> 0) COLLATE "C" < (r ->> 0) COLLATE "C"
                       WHEN '<=' THEN (l ->> 0) COLLATE "C" <= (r ->> 0) COLLATE "C"
                       WHEN '>' THEN (l ->> 0) COLLATE "C" > (r ->> 0) COLLATE "C"
                       ELSE (l ->> 0) COLLATE "C" >= (r ->> 0) COLLATE "C" END;
    END IF;
    RETURN false;
END
$$;

-- JSON equality of two scalars as the planner sees it: true and 1 differ.
CREATE FUNCTION goalrt.policy_equal(l jsonb, r jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(l) = jsonb_typeof(r) AND l = r
$$;

-- The keys under a prefix that hold at least one live path: orders -> o1, o2, ...
CREATE FUNCTION goalrt.policy_keys(prefix text) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT split_part(substr(s.path, length(prefix) + 2), '.', 1)
      FROM goalrt.state_data s
     WHERE s.path >= prefix || '.' AND s.path < prefix || '/' AND s.value IS NOT NULL
$$;

-- Whether anything lives at or under a path: orders.o1 or orders.o1.*.
CREATE FUNCTION goalrt.policy_key_live(p text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM goalrt.state_data s
                    WHERE s.path >= p AND s.path < p || '/' AND s.value IS NOT NULL
                      AND (s.path = p OR s.path >= p || '.'))
$$;

-- Check the policies that the changed paths concern; raise on the first that
-- does not hold. A wildcard is bound to each key a changed path names (or, when
-- a changed path the policy reads names no key of it, to every key); a key is
-- checked only while something still lives under it.
CREATE FUNCTION goalrt.check_policies(paths text[]) RETURNS void
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
    FOR pol IN SELECT * FROM goalrt.gdl_policies ORDER BY name LOOP
        -- The (maybe partial) bindings the changed paths give.
        todo := ARRAY(
            SELECT DISTINCT coalesce(
                       (SELECT jsonb_object_agg(v.var, m.cap[v.i])
                          FROM jsonb_array_elements_text(r -> 'vars') WITH ORDINALITY AS v(var, i)),
                       '{}'::jsonb)
              FROM unnest(paths) AS p(path)
              CROSS JOIN jsonb_array_elements(pol.reads) AS r
              CROSS JOIN LATERAL (SELECT regexp_match(p.path, r ->> 'regex') AS cap) m
             WHERE m.cap IS NOT NULL);
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

-- Submit the goals of the GDL triggers of appended events, in the appending
-- transaction: each event submits each of its goals once (idempotency key
-- event:<id>:<goal>). Params the event's data cannot give (a missing field,
-- a wrong type) do not refuse the append: the event gdl.trigger_refused
-- (stream 'gdl') records the event, the goal and why.
CREATE FUNCTION goalrt.fire_triggers(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m       record;
    params  jsonb;
    created boolean := false;
    r       record;
BEGIN
    FOR m IN
        SELECT n.id, n.type, n.data, t.goal_name, t.params
          FROM goalrt.event_data n
          JOIN goalrt.gdl_triggers t ON t.event_type = n.type
         WHERE n.id = ANY (ids) AND t.event_type = ANY (types)
         ORDER BY n.id, t.goal_name
    LOOP
        SELECT jsonb_strip_nulls(coalesce(jsonb_object_agg(
                   p.key, CASE WHEN p.value ? 'field' THEN m.data -> (p.value ->> 'field') ELSE p.value -> 'value' END),
                   '{}'))
          INTO params
          FROM jsonb_each(m.params) p;
        BEGIN
            SELECT * INTO r FROM goalrt.submit_one(
                m.goal_name, params, jsonb_build_object('key', 'event:' || m.id || ':' || m.goal_name), '');
            created := created OR r.created;
        EXCEPTION WHEN SQLSTATE 'GR008' THEN
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('gdl', 'gdl.trigger_refused',
                    jsonb_build_object('event_id', m.id, 'event_type', m.type, 'goal', m.goal_name,
                                       'params', params, 'error', SQLERRM));
        END;
    END LOOP;
    IF created THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
END
$$;

-- A goal type's defaults (GDL priority and deadline) apply to every submit
-- that does not give its own.
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
                'run_at', start_at, 'key', gkey, 'parent_id', parent, 'partition_key', o ->> 'partition_key',
                'deadline', deadline)));
    RETURN QUERY SELECT new_id, true;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.match_appended(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    k integer;
    m record;
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
        SELECT DISTINCT ON (w.goal_id) w.goal_id, n.id, n.stream, n.type, n.data
          FROM goalrt.event_data n
          CROSS JOIN LATERAL (
              SELECT w0.goal_id, w0.since_id, w0.filter FROM goalrt.goal_waits w0
               WHERE w0.event_type = n.type AND w0.match_key IS NULL
              UNION ALL
              SELECT w1.goal_id, w1.since_id, w1.filter FROM goalrt.goal_waits w1
               WHERE w1.event_type = n.type AND w1.match_key = ANY (goalrt.match_keys(n.data))
          ) w
         WHERE n.id = ANY (ids) AND n.id > w.since_id AND (w.filter = '{}' OR n.data @> w.filter)
         ORDER BY w.goal_id, n.id
    LOOP
        PERFORM goalrt.finish_wait(
            m.goal_id,
            jsonb_build_object('event', jsonb_build_object('id', m.id, 'stream', m.stream, 'type', m.type,
                                                           'data', m.data)),
            false, NULL);
    END LOOP;
END
$$;

-- change_state checks the GDL policies its paths concern.
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

-- Store a workspace's compiled definitions as a new version (nothing new when
-- the content hash equals the current version's) and install what the
-- database runs: the goal types with their params schemas and defaults, the
-- policies, the triggers and the actions' limits (limits the previous version
-- set and this one does not are dropped). One transaction: all or nothing.
--   runtime: {"goal_types": [{"name", "params_schema", "defaults"}],
--             "policies": [{"name", "app", "condition", "text", "wildcards", "reads"}],
--             "triggers": [{"event_type", "goal_name", "params"}],
--             "limits": [{"action", "options"}]}
CREATE FUNCTION goalrt.load_gdl(workspace text, content_hash text, definitions jsonb, runtime jsonb)
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

COMMENT ON FUNCTION goalrt.load_gdl(text, text, jsonb, jsonb) IS
    'Store compiled GDL definitions as a new version (unless unchanged) and install policies, triggers, limits.';


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
    -- Coordination: waits, limits, trees.
    GRANT SELECT ON goalrt.goal_waits, goalrt.limits, goalrt.limit_buckets, goalrt.limit_holders,
                    goalrt.waiting_goals
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.json_problem(jsonb, jsonb, text),
        goalrt.partition_of(text, integer),
        goalrt.step_problem(jsonb, text),
        goalrt.goal_tree(bigint)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.resume_goal(bigint, jsonb, text),
        goalrt.set_limit(text, jsonb),
        goalrt.drop_limit(text, text),
        goalrt.wake_due_v1(integer),
        goalrt.register_worker_v2(text, text, text, integer, integer, text[], text[], integer[], integer),
        goalrt.claim_goals_v2(text, integer, double precision, text[], integer[], integer, double precision)
        TO goalrt_writer, goalrt_admin;
    -- GDL: definitions, policies, triggers.
    GRANT SELECT ON goalrt.gdl_versions, goalrt.gdl_policies, goalrt.gdl_triggers
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.policy_holds(jsonb, jsonb),
        goalrt.policy_term(jsonb, jsonb),
        goalrt.policy_equal(jsonb, jsonb),
        goalrt.policy_keys(text),
        goalrt.policy_key_live(text)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION goalrt.load_gdl(text, text, jsonb, jsonb) TO goalrt_admin;
    GRANT INSERT, UPDATE, DELETE ON goalrt.settings, goalrt.forks TO goalrt_admin;
END
$$;
