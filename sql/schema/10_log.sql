-- goalrt's schema: the files of sql/schema/, applied in name order, build it.
--
--   00_extensions.sql    optional extensions (pgvector); forks skip this file
--   10_log.sql           the event log: append, tick, read, verify
--   20_state.sql         settings, state, snapshots, time travel, forks
--   30_goals.sql         goal types, goals and their steps; submit, cancel
--   35_workers.sql       what workers call: claim, plan, complete, fail, release
--   40_coordination.sql  waits, timers, asks, child goals, deadlines, limits
--   50_gdl.sql           GDL versions, policies, triggers
--   60_roles.sql         roles and privileges
--
-- These files are the current schema, each object defined once in its final
-- form. A change edits them in place and adds a delta migration that brings
-- an existing database to the same place (docs/sql.md, "Changing the
-- schema"); a test asserts that both ways build identical catalogs.
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
--   GR010  a JSON value nested deeper than goalrt's limit (100 levels of
--          arrays and objects; see goalrt.json_too_deep)

CREATE SCHEMA IF NOT EXISTS goalrt;

-------------------------------------------------------------------------------
-- Tenants (docs/security.md, "Tenants")
--
-- A tenant is a name; the login role of a session (session_user) is mapped
-- to one in tenant_roles by the schema's owner (set_tenant_role). An
-- unmapped role belongs to the default tenant '', so one tenant needs no
-- configuration; a role mapped to '*' serves every tenant (a worker fleet
-- for all of them). Every table that holds a tenant's data has a tenant
-- column, and row-level security policies (70_tenants.sql) let a session
-- see and touch only its tenant's rows: by hand in psql as much as inside
-- goalrt's functions, which run as the owner and are held to the policies
-- because those tables FORCE row-level security. That needs an owner that
-- is neither a superuser nor BYPASSRLS (set_tenant_role refuses otherwise):
-- such roles skip policies. A database with one tenant pays for none of it:
-- the policies are switched on (and the tenant columns default to the
-- session's tenant, not '') only while a role is mapped to another tenant
-- (sync_tenant_security, 70_tenants.sql).
-------------------------------------------------------------------------------

CREATE TABLE goalrt.tenant_roles (
    role   text PRIMARY KEY,
    -- '' the default tenant, '*' every tenant, else a tenant's name.
    tenant text NOT NULL CHECK (tenant = '*' OR tenant ~ '^[A-Za-z0-9_.:@-]{0,128}$')
);

COMMENT ON TABLE goalrt.tenant_roles IS
    'The tenant each login role acts for (empty: the default tenant, *: every tenant); unmapped roles are in the default tenant.';

-- The session's tenant: its login role's, '' when unmapped. A session of a
-- role mapped to '*' acts for one goal's tenant while goalrt's worker
-- functions work on that goal (they set goalrt.acting_tenant to '=' and the
-- tenant, and back to '' after): only such a
-- session reads that setting, and it may see every tenant anyway. Every
-- name and operator is qualified, so a caller's search_path cannot change
-- what this returns. Policies call it as (SELECT goalrt.current_tenant()):
-- an InitPlan, run once per statement, not once per row; a tenant column's
-- default calls it once per row (while tenancy is on). plpgsql, not sql: a
-- sql function that cannot be inlined (this one reads a table) is parsed
-- and planned again in every statement that calls it (PostgreSQL before
-- 18), 35 to 50 us for each statement a policy holds; plpgsql keeps its
-- plan for the session, about 3 us a call.
CREATE FUNCTION goalrt.current_tenant() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    t      pg_catalog.text;
    acting pg_catalog.text;
BEGIN
    SELECT r.tenant INTO t FROM goalrt.tenant_roles r
     WHERE r.role OPERATOR(pg_catalog.=) session_user::pg_catalog.text;
    IF t IS NULL THEN
        RETURN '';
    ELSIF t OPERATOR(pg_catalog.<>) '*' THEN
        RETURN t;
    END IF;
    acting := pg_catalog.current_setting('goalrt.acting_tenant', true);
    IF pg_catalog.left(acting, 1) OPERATOR(pg_catalog.=) '=' THEN
        RETURN pg_catalog.substr(acting, 2);
    END IF;
    RETURN '*';
END
$$;

COMMENT ON FUNCTION goalrt.current_tenant() IS
    'The tenant of the session''s login role (empty: the default tenant, *: a role that serves every tenant).';

-- Map a login role to a tenant ('' the default, '*' every tenant). Only the
-- owner may call it (no grant): an admin of one tenant must not be able to
-- move itself into another. Refused while the schema's owner skips
-- row-level security (a superuser or BYPASSRLS): no policy would hold.
-- The first mapping to a tenant other than the default switches tenancy on
-- (sync_tenant_security): it commits with the mapping, so the role's first
-- statement after that is already held to its tenant.
CREATE FUNCTION goalrt.set_tenant_role(role_name text, tenant text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    o record;
BEGIN
    SELECT r.rolname, r.rolsuper OR r.rolbypassrls AS skips INTO o
      FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
     WHERE c.oid = 'goalrt.tenant_roles'::regclass;
    IF o.skips THEN
        RAISE EXCEPTION 'tenants need a schema owner that row-level security applies to: % is a superuser or BYPASSRLS',
            o.rolname USING ERRCODE = 'GR008', HINT = 'migrate as a role without SUPERUSER and BYPASSRLS (docs/security.md)';
    END IF;
    IF role_name IS NULL OR NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role_name) THEN
        RAISE EXCEPTION 'no role %', coalesce(quote_ident(role_name), 'NULL') USING ERRCODE = 'GR008';
    END IF;
    IF tenant IS NULL OR NOT (tenant = '*' OR tenant ~ '^[A-Za-z0-9_.:@-]{0,128}$') THEN
        RAISE EXCEPTION 'invalid tenant %: up to 128 letters, digits and _ . : @ - (empty: the default tenant, *: every tenant)',
            coalesce(quote_literal(tenant), 'NULL') USING ERRCODE = 'GR008';
    END IF;
    -- One mapping change at a time (it decides whether tenancy is on); readers are not blocked.
    LOCK TABLE goalrt.tenant_roles IN SHARE ROW EXCLUSIVE MODE;
    INSERT INTO goalrt.tenant_roles AS t (role, tenant) VALUES (role_name, set_tenant_role.tenant)
    ON CONFLICT (role) DO UPDATE SET tenant = EXCLUDED.tenant;
    PERFORM goalrt.sync_tenant_security();
END
$$;

COMMENT ON FUNCTION goalrt.set_tenant_role(text, text) IS
    'Map a login role to a tenant (empty: the default, *: every tenant); for the schema owner only.';

-- Return a role to the default tenant; true when it was mapped. The last
-- mapping to another tenant switches tenancy off, unless rows of another
-- tenant remain (sync_tenant_security).
CREATE FUNCTION goalrt.drop_tenant_role(role_name text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    found_it boolean;
BEGIN
    LOCK TABLE goalrt.tenant_roles IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM goalrt.tenant_roles t WHERE t.role = role_name;
    found_it := FOUND;
    PERFORM goalrt.sync_tenant_security();
    RETURN found_it;
END
$$;

COMMENT ON FUNCTION goalrt.drop_tenant_role(text) IS
    'Return a login role to the default tenant; for the schema owner only.';

-- Rows written for a goal by a session that serves every tenant, in a
-- statement that covers many goals (a claim's goal.started events): the
-- tenant default gave '*', which no row may keep; take the goal's. The
-- triggers exist only while a role is mapped to '*' (sync_tenant_security),
-- and fire WHEN tenant = '*', so no other session pays for them.
CREATE FUNCTION goalrt.goal_row_tenant() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    gid bigint;
BEGIN
    -- One branch per table: a NEW field another table lacks cannot be named.
    IF TG_TABLE_NAME = 'event_data' THEN
        IF NEW.stream ~ '^goal:[0-9]{1,18}$' THEN
            gid := substr(NEW.stream, 6)::bigint;
        END IF;
    ELSIF TG_TABLE_NAME = 'goals' THEN
        gid := NEW.parent_id;
    ELSE
        gid := NEW.goal_id;
    END IF;
    NEW.tenant := (SELECT g.tenant FROM goalrt.goals g WHERE g.id = gid);
    IF NEW.tenant IS NULL THEN
        RAISE EXCEPTION 'a session that serves every tenant cannot write goalrt.% for no goal''s tenant', TG_TABLE_NAME
            USING ERRCODE = 'GR008';
    END IF;
    RETURN NEW;
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
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Who appended it, as the database knows them: the session's login role
    -- (session_user; neither SET ROLE nor a SECURITY DEFINER function changes
    -- it). No goalrt function names this column, so the default always
    -- applies, and no role but the owner may insert here. NULL only in events
    -- appended before goalrt recorded it (migration 0016), which is why the
    -- column may be NULL at all. text, not name: a name takes 64 bytes in
    -- every row, a short text a tenth of that.
    db_role     text DEFAULT session_user,
    -- The tenant the event belongs to (docs/security.md, "Tenants").
    tenant      text NOT NULL DEFAULT '' CHECK (tenant <> '*')
);
CREATE INDEX event_data_xid_idx ON goalrt.event_data (xid);
CREATE INDEX event_data_stream_idx ON goalrt.event_data (stream, id);

COMMENT ON TABLE goalrt.event_data IS
    'Payload of every appended event. Append-only; read it through goalrt.events.';
COMMENT ON COLUMN goalrt.event_data.db_role IS
    'The login role (session_user) of the session that appended the event, set by the column default; NULL before migration 0016.';

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
    log_time  timestamptz NOT NULL,
    -- The transaction of the tick that assigned this position (NULL for
    -- positions assigned before goalrt recorded it, all long committed).
    -- Readers skip their own transaction's positions: those are not
    -- committed yet, and would vanish if it rolled back.
    tick_xid  xid8,
    -- The event's tenant, copied by the tick: a tenant reads only its own positions.
    tenant    text NOT NULL DEFAULT ''
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

-- security_invoker: the reader's row-level security applies (its tenant's events).
CREATE VIEW goalrt.events WITH (security_invoker = true) AS
SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at,
       o.prev_hash, o.hash, e.db_role
  FROM goalrt.event_order o
  JOIN goalrt.event_data e ON e.id = o.event_id
 WHERE NOT coalesce(o.tick_xid = pg_current_xact_id_if_assigned(), false);

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
-- separator (U+001F). Stream, type and role carry their length, so no value
-- can pose as a boundary; JSON text never holds a raw U+001F (it is escaped),
-- and jsonb's text form is deterministic (key order, spacing). The time is
-- integer microseconds since the epoch, so the session's TimeZone cannot
-- change it. The role comes last: concat_ws skips NULLs, so an event appended
-- before goalrt recorded roles (db_role NULL) keeps the digest it was hashed
-- with, and every later one's digest covers its role.
-- STABLE, not IMMUTABLE, because concat_ws is: a SQL function is inlined
-- into the calling query only when its body is no more volatile than it
-- claims, and an inlined digest costs a third of a called one.
CREATE FUNCTION goalrt.event_digest(
    id bigint, stream text, type text, data jsonb, metadata jsonb, recorded_at timestamptz, db_role text
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.concat_ws(E'\x1f',
        id, pg_catalog.length(stream), stream, pg_catalog.length(type), type,
        data::text, metadata::text, (EXTRACT(epoch FROM recorded_at) * 1000000)::bigint,
        pg_catalog.length(db_role), db_role), 'UTF8'))
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

-- Nesting. jsonb takes JSON nested thousands of levels deep, which Python
-- cannot decode and recursive code cannot walk. Every function that stores a
-- JSON value a caller gives (event data and metadata, state values, goal
-- params and params schemas, step args, plan details, results, answers)
-- refuses one nested deeper than 100 levels of arrays and objects, counted as
-- goalrt/db/jsontext.py's MAX_JSON_DEPTH counts them: a scalar is 0, [] and
-- {} are 1, [[1]] is 2. A value is deeper than 100 exactly when an array or
-- object sits 100 levels below its root; the search stops at that level, so
-- it never recurses deeper and costs about 0.3 us for a small value (a
-- guard on the value's size would cost more than it saves).
CREATE FUNCTION goalrt.json_too_deep(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.jsonb_path_exists(value, 'strict $.**{100} ? (@.type() == "array" || @.type() == "object")')
$$;

-- Refuse `value` (where goalrt.json_too_deep holds) with GR010, in one line
-- naming `field`, how deep it nests and the limit. Callers test first, as
--   IF goalrt.json_too_deep(v) THEN PERFORM goalrt.json_depth_error('data', v); END IF;
-- (an IF of the inlined test costs a tenth of a PERFORM).
CREATE FUNCTION goalrt.json_depth_error(field text, value jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    deep integer := 100;  -- an array or object sits at this level below the root
    free integer;         -- none sits at this level (NULL until one is found)
    mid  integer;
BEGIN
    -- The depth is one more than the deepest such level: double, then halve.
    -- Searching very deep levels can exhaust the stack; then say "at least".
    BEGIN
        WHILE free IS NULL OR free - deep > 1 LOOP
            mid := CASE WHEN free IS NULL THEN deep * 2 ELSE (deep + free) / 2 END;
            IF jsonb_path_exists(value, format(
                   'strict $.**{%s} ? (@.type() == "array" || @.type() == "object")', mid)::jsonpath) THEN
                deep := mid;
            ELSE
                free := mid;
            END IF;
        END LOOP;
    EXCEPTION WHEN statement_too_complex THEN
        RAISE EXCEPTION '% is nested at least % levels deep; the limit is 100', field, deep + 1
            USING ERRCODE = 'GR010';
    END;
    RAISE EXCEPTION '% is nested % levels deep; the limit is 100', field, deep + 1 USING ERRCODE = 'GR010';
END
$$;

-- Append one event. Appends match waits (see match_appended).
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
    IF goalrt.json_too_deep(data) THEN
        PERFORM goalrt.json_depth_error('data', data);
    END IF;
    IF goalrt.json_too_deep(metadata) THEN
        PERFORM goalrt.json_depth_error('metadata', metadata);
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

COMMENT ON FUNCTION goalrt.append_event(text, text, jsonb, jsonb) IS
    'Append one event; returns its id. Its pos is assigned by the next tick after commit.';

-- Append many events in one call. `events` is a JSON array of objects
-- {"stream": ..., "type": ..., "data": ..., "metadata": ...}; ids are
-- returned in the order of the array, which is also their order in the log.
CREATE FUNCTION goalrt.append_events(events jsonb) RETURNS SETOF bigint
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
    PERFORM goalrt.json_depth_error(format('events[%s].%s', i - 1, f), v)
       FROM jsonb_array_elements(events) WITH ORDINALITY AS t(x, i),
            LATERAL (VALUES ('data', x -> 'data'), ('metadata', x -> 'metadata')) AS d(f, v)
      WHERE goalrt.json_too_deep(v);

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

COMMENT ON FUNCTION goalrt.append_events(jsonb) IS
    'Append a JSON array of events atomically; returns their ids in array order.';

-------------------------------------------------------------------------------
-- The clock
-------------------------------------------------------------------------------

-- The tick itself: give positions to every event committed since the last
-- tick and return the head (the last assigned pos). Safe to call from any
-- number of sessions at once: ticks are serialised by a transaction-level
-- advisory lock, and a caller that cannot get it within wait_ms returns the
-- current head instead of waiting behind a long transaction.
--
-- A tick needs a fresh snapshot per statement, so it does nothing (and just
-- returns the head) in a REPEATABLE READ or SERIALIZABLE transaction, and in
-- a transaction that has already written (its own uncommitted events must
-- never be positioned). It cannot write in a READ ONLY transaction or on a
-- standby either; there too it returns the head, so reads keep working.
--
-- A tick that positions events holds the clock (the lock, the clock row and
-- every later position) until its transaction ends, so only the owner may
-- call this function: goalrt's functions call it where the transaction is
-- sure to end at once (tick_commit) or is the owner's own (see goalrt.tick).
--
-- Its commit is synchronous whatever the caller's synchronous_commit: the
-- commit record is flushed before the transaction becomes visible, so no
-- other session can see a position that a crash could take back.
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
    new_tenant text[] := '{}';
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
        SELECT b.id, b.recorded_at, b.xid, b.tenant,
               goalrt.event_digest(b.id, b.stream, b.type, b.data, b.metadata, b.recorded_at, b.db_role) AS digest
          FROM (SELECT e.id, e.xid, e.stream, e.type, e.data, e.metadata, e.recorded_at, e.db_role, e.tenant
                  FROM goalrt.event_data e
                 WHERE e.xid >= pg_snapshot_xmax(c.snapshot) AND e.xid < pg_snapshot_xmax(cur)
                   AND pg_visible_in_snapshot(e.xid, cur)
                UNION ALL
                SELECT e.id, e.xid, e.stream, e.type, e.data, e.metadata, e.recorded_at, e.db_role, e.tenant
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
        new_tenant := new_tenant || r.tenant;
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
    INSERT INTO goalrt.event_order (pos, event_id, prev_hash, hash, log_time, tenant, tick_xid)
    SELECT *, pg_current_xact_id() FROM unnest(new_pos, new_ids, new_prev, new_hash, new_time, new_tenant);
    UPDATE goalrt.clock
       SET snapshot = cur, head = p, head_hash = h, ticks = clock.ticks + 1, ticked_at = now();
    -- One notification per tick, never per event; delivered after commit.
    PERFORM pg_notify('goalrt_events', p::text);
    RETURN p;
END
$$;

COMMENT ON FUNCTION goalrt.position_events(integer) IS
    'The tick, for goalrt''s own functions: see goalrt.tick and goalrt.tick_commit.';

-- Tick and return the head, if the caller may hold the clock until its
-- transaction ends: a member of the owner's role, or goalrt.tick_commit,
-- which commits as soon as this returns. For anyone else it returns the
-- committed head without ticking, so no transaction another role keeps
-- open can hold the clock. tick_commit is recognised by the call stack:
-- called by it alone (the stack's two lines), and every procedure that
-- could be shown under its name is the owner's. (A procedure is shown
-- without its schema when the session's search_path held that schema: if
-- someone else owns a procedure of that name and signature in any schema,
-- such sessions do not tick here. goalrt's clients qualify every name.)
-- Only the name and signature are matched, not the words around them: the
-- stack is written in the server's lc_messages language.
CREATE FUNCTION goalrt.tick(wait_ms integer DEFAULT 200) RETURNS bigint
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

-- Tick and commit: the way every role ticks. A procedure, so that it can
-- COMMIT right after the tick: nothing of the caller's runs between the two.
-- Called inside a transaction block (or from a function) its COMMIT fails
-- and the tick is rolled back with the transaction. The commit is
-- synchronous (see position_events). Returns the head in `head`.
CREATE PROCEDURE goalrt.tick_commit(wait_ms integer DEFAULT 200, INOUT head bigint DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    head := goalrt.tick(wait_ms);
    COMMIT;
END
$$;

COMMENT ON PROCEDURE goalrt.tick_commit(integer, bigint) IS
    'Tick the clock and commit at once (CALL it outside a transaction block); returns the head.';

-------------------------------------------------------------------------------
-- Reading
-------------------------------------------------------------------------------

-- Turn a glob ("order.*") into a LIKE pattern, escaping LIKE's own specials.
CREATE FUNCTION goalrt.glob_to_like(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
               pg_catalog.replace(pattern, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%'), '?', '_')
$$;

-- Events after a position, in pos order: only positions of committed ticks,
-- never one its own transaction assigned (that could still roll back). To
-- read everything committed before the call, CALL goalrt.tick_commit()
-- first (goalrt's Python clients do). With advance (the default) a session
-- of the owner also ticks here; what that tick positions is returned from
-- the next call on.
CREATE FUNCTION goalrt.read_events(
    after_pos bigint DEFAULT 0, max_count integer DEFAULT 1000,
    stream_name text DEFAULT NULL, type_pattern text DEFAULT NULL,
    advance boolean DEFAULT true
) RETURNS SETOF goalrt.events
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    mine xid8;
    -- This function runs as the owner, whom event_order's policy does not
    -- hold (the tick must see every tenant's events): filter by hand.
    t    text := goalrt.current_tenant();
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
           AND (o.tenant = t OR t = '*')
         ORDER BY o.pos
         LIMIT max_count;
    ELSE
        RETURN QUERY EXECUTE format(
            'SELECT o.pos, e.id, e.stream, e.type, e.data, e.metadata, e.recorded_at, o.prev_hash, o.hash,
                    e.db_role
               FROM goalrt.event_order o
               JOIN goalrt.event_data e ON e.id = o.event_id
              WHERE o.pos > $1 AND (o.tenant = $6 OR $6 = ''*'') %s %s %s
              ORDER BY o.pos
              LIMIT $2',
            CASE WHEN stream_name IS NOT NULL THEN 'AND e.stream = $3' ELSE '' END,
            CASE WHEN type_pattern IS NOT NULL THEN 'AND e.type LIKE goalrt.glob_to_like($4)' ELSE '' END,
            CASE WHEN mine IS NOT NULL THEN 'AND o.tick_xid IS DISTINCT FROM $5' ELSE '' END)
        USING coalesce(after_pos, 0), max_count, stream_name, type_pattern, mine, t;
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

COMMENT ON FUNCTION goalrt.verify_chain() IS
    'Recompute the hash chain over the whole log; names the first bad position if it is broken.';

-------------------------------------------------------------------------------
-- Anchors
--
-- verify_chain() proves the log agrees with itself, not that it is the log
-- you had: the owner (or a superuser, who can switch the append-only
-- triggers off) can rewrite an event and recompute every later hash and the
-- clock's head_hash, or drop the newest events and roll the clock back, and
-- the chain still verifies. An anchor is a position and the hash the log had
-- there, kept where the database's owner cannot write. Every hash covers all
-- before it, so a log that recomputes cleanly and still holds the anchor's
-- hash at its position holds exactly the prefix the anchor was taken from.
-------------------------------------------------------------------------------

-- The head of the chain: the last position handed out and its hash (in a log
-- that holds no event yet, base_pos and base_hash: 0 and zeros, or in a fork
-- the fork point). Stored elsewhere, it is an anchor.
CREATE FUNCTION goalrt.chain_head()
RETURNS TABLE (pos bigint, hash bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT c.head, c.head_hash FROM goalrt.clock c
$$;

COMMENT ON FUNCTION goalrt.chain_head() IS
    'The head of the hash chain (position and hash): an anchor to keep outside the database.';

-- Why the log does not hold anchor_hash at anchor_pos (NULL when it does):
-- the position is past the head (the log was cut back below it), before the
-- start of this log (a fork), missing, or holds another hash. Only the one
-- position is looked at; verify_anchors also recomputes the chain.
CREATE FUNCTION goalrt.anchor_problem(anchor_pos bigint, anchor_hash bytea) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    c goalrt.clock;
    held bytea;
BEGIN
    IF anchor_pos IS NULL OR anchor_hash IS NULL THEN
        RAISE EXCEPTION 'an anchor needs a position and a hash' USING ERRCODE = '22023';
    END IF;
    IF length(anchor_hash) <> 32 THEN
        RAISE EXCEPTION 'the hash of anchor % is % bytes long; a sha256 hash is 32', anchor_pos, length(anchor_hash)
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO c FROM goalrt.clock;
    IF anchor_pos > c.head THEN
        RETURN format('the log ends at position %s, before the anchor', c.head);
    ELSIF anchor_pos < c.base_pos THEN
        RETURN format('the anchor is before the start of this log (position %s)', c.base_pos);
    ELSIF anchor_pos = c.base_pos THEN
        held := c.base_hash;
    ELSE
        SELECT o.hash INTO held FROM goalrt.event_order o WHERE o.pos = anchor_pos;
        IF NOT FOUND THEN
            RETURN format('position %s is missing from the log', anchor_pos);
        END IF;
    END IF;
    IF held IS DISTINCT FROM anchor_hash THEN
        RETURN format('position %s holds hash %s', anchor_pos, encode(held, 'hex'));
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION goalrt.anchor_problem(bigint, bytea) IS
    'Why the log does not hold this hash at this position (NULL when it does).';

-- verify_chain(), then each anchor (positions[i], hashes[i]) in position
-- order. ok when the chain recomputes and the log holds every anchor; else
-- first_bad_pos and problem name the chain's first bad position, or the first
-- anchor the log does not hold (then anchor_pos and anchor_hash are that
-- anchor, and problem names it as POS:HASH).
CREATE FUNCTION goalrt.verify_anchors(positions bigint[], hashes bytea[])
RETURNS TABLE (ok boolean, checked bigint, first_bad_pos bigint, problem text, anchor_pos bigint,
               anchor_hash bytea)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    chain record;
    a record;
    why text;
BEGIN
    IF positions IS NULL OR hashes IS NULL OR cardinality(positions) <> cardinality(hashes) THEN
        RAISE EXCEPTION 'give one hash for each anchor position (% positions, % hashes)',
            coalesce(cardinality(positions)::text, 'NULL'), coalesce(cardinality(hashes)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO chain FROM goalrt.verify_chain();
    IF NOT chain.ok THEN
        RETURN QUERY SELECT false, chain.checked, chain.first_bad_pos, chain.problem, NULL::bigint, NULL::bytea;
        RETURN;
    END IF;
    FOR a IN SELECT u.p, u.h FROM unnest(positions, hashes) WITH ORDINALITY AS u (p, h, i) ORDER BY u.p, u.i LOOP
        why := goalrt.anchor_problem(a.p, a.h);
        IF why IS NOT NULL THEN
            RETURN QUERY SELECT false, chain.checked, a.p, format('anchor %s:%s: %s', a.p, encode(a.h, 'hex'), why), a.p,
                                a.h;
            RETURN;
        END IF;
    END LOOP;
    RETURN QUERY SELECT true, chain.checked, NULL::bigint, NULL::text, NULL::bigint, NULL::bytea;
END
$$;

COMMENT ON FUNCTION goalrt.verify_anchors(bigint[], bytea[]) IS
    'verify_chain(), then whether the log still holds each anchor (position, hash); names the first failure.';
