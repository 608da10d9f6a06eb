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
    path     text COLLATE "C" NOT NULL CHECK (goalrt.valid_path(path)),
    value    jsonb,            -- NULL: deleted (a tombstone that keeps the version)
    version  bigint NOT NULL CHECK (version >= 0),
    event_id bigint,           -- the state.changed event that last changed it
    -- In a fork, for rows inherited from the main line and not changed since:
    -- the main line position that set them (event_id is then NULL).
    inherited_pos bigint,
    CHECK ((event_id IS NULL) <> (inherited_pos IS NULL)),
    -- Paths are per tenant. The path leads the key: every read names a path
    -- or a prefix, and the tenant is the policy's filter.
    tenant   text NOT NULL DEFAULT '' CHECK (tenant <> '*'),
    CONSTRAINT state_data_pkey PRIMARY KEY (path, tenant)
);

COMMENT ON TABLE goalrt.state_data IS
    'Materialized state: the fold of the state.changed events. Written only by goalrt.change_state; read goalrt.state.';

CREATE INDEX event_data_state_paths_idx ON goalrt.event_data
    USING gin ((data -> 'changes') jsonb_path_ops) WHERE type = 'state.changed';

CREATE VIEW goalrt.state WITH (security_invoker = true) AS
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
-- and commits later), which is what makes a replay exact. The state.changed
-- event matches waits (maintained goals watch paths, see match_appended),
-- and the change is checked against the GDL policies its paths concern
-- (see check_policies): a change that breaks one is refused whole.
--
-- enable_seqscan off: every statement here reaches state_data by primary
-- key, but a plan cached while the table was small joins the change set to
-- a scan of the whole table (measured: 2.2x slower at 10,000 paths).
CREATE FUNCTION goalrt.change_state(changes jsonb, stream text DEFAULT 'state', metadata jsonb DEFAULT '{}')
RETURNS TABLE (event_id bigint, path text, version bigint, value jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    bad     record;
    new_id  bigint;
    -- The paths changed, for the joins on state_data below (see there).
    changed text[];
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

    changed := ARRAY(SELECT x ->> 'path' FROM jsonb_array_elements(changes) AS t(x));
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
      -- The path read from JSON first (OFFSET 0 keeps it a column of its
      -- own): while tenancy is on, state_data's policy lets only leakproof
      -- conditions into an index scan; s.path = x ->> 'path' is not one
      -- (->> may raise an error), s.path = t.p is, and so is s.path = ANY
      -- (changed), which keeps the scan to these paths whatever the join
      -- (the items' count is a guess of 100 to the planner). The same below.
      FROM (SELECT x, i, x ->> 'path' AS p FROM jsonb_array_elements(changes) WITH ORDINALITY AS t0(x, i) OFFSET 0) AS t
      JOIN goalrt.state_data s ON s.path = t.p
     WHERE s.path = ANY (changed)
       AND ((jsonb_typeof(x -> 'expect_version') = 'number' AND (x ->> 'expect_version')::bigint <> s.version)
            OR (x ->> 'op' = 'inc' AND s.value IS NOT NULL AND jsonb_typeof(s.value) <> 'number'))
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
      FROM (SELECT x, x ->> 'path' AS p FROM jsonb_array_elements(changes) AS t0(x) OFFSET 0) AS t
     WHERE s.path = t.p AND s.path = ANY (changed)
    RETURNING new_id, s.path::text, s.version, s.value;
    PERFORM set_config('goalrt.applying', 'off', true);
    -- GDL policies see the state with the change applied; a broken one aborts it all.
    IF EXISTS (SELECT 1 FROM goalrt.gdl_policies) THEN
        PERFORM goalrt.check_policies(ARRAY(SELECT x ->> 'path' FROM jsonb_array_elements(changes) AS t(x)));
    END IF;
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
RETURNS TABLE (path text, reset boolean, reset_value jsonb, inc numeric, changes bigint, last_pos bigint,
               tenant text)
LANGUAGE sql STABLE AS $$
    WITH ch AS (
        SELECT o.pos, e.tenant, c.x ->> 'op' AS op, c.x ->> 'path' AS path, c.x -> 'value' AS value,
               (c.x -> 'by')::numeric AS amount
          FROM goalrt.event_order o
          JOIN goalrt.event_data e ON e.id = o.event_id
         CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(e.data -> 'changes') AS c(x)
         WHERE o.pos > after_pos AND o.pos <= to_pos AND e.type = 'state.changed'
           AND (path_regex IS NULL OR (c.x ->> 'path') OPERATOR(pg_catalog.~) path_regex)
    ), ranked AS (
        -- resets_after: how many sets/deletes of this path come at or after this change
        SELECT ch.*, count(*) FILTER (WHERE ch.op <> 'inc')
                     OVER (PARTITION BY ch.tenant, ch.path ORDER BY ch.pos DESC ROWS UNBOUNDED PRECEDING) AS resets_after
          FROM ch
    )
    SELECT r.path,
           bool_or(r.op <> 'inc'),
           (pg_catalog.array_agg(r.value) FILTER (WHERE r.op <> 'inc' AND r.resets_after = 1))[1],
           sum(r.amount) FILTER (WHERE r.op = 'inc' AND r.resets_after = 0),
           count(*),
           max(r.pos),
           r.tenant
      FROM ranked r
     GROUP BY r.tenant, r.path
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
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    -- The path's tenant. Snapshots are taken for every tenant at once (as
    -- the owner); a reader's row-level security, or state_fold, filters.
    tenant     text NOT NULL DEFAULT ''
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
            SELECT e.path, e.tenant, e.value, e.version
              FROM goalrt.snapshot_entries e JOIN f ON e.path = f.path AND e.tenant = f.tenant
             WHERE e.valid_to IS NULL
        ), closed AS (
            UPDATE goalrt.snapshot_entries e SET valid_to = at_pos
              FROM old WHERE e.path = old.path AND e.tenant = old.tenant AND e.valid_to IS NULL
        ), added AS (
            INSERT INTO goalrt.snapshot_entries (path, valid_from, valid_to, value, version, pos, tenant)
            SELECT f.path, at_pos, NULL, goalrt.fold_value(o.value, f.reset, f.reset_value, f.inc),
                   coalesce(o.version, 0) + f.changes, f.last_pos, f.tenant
              FROM f LEFT JOIN old o ON o.path = f.path AND o.tenant = f.tenant
            RETURNING path, tenant, value
        )
        SELECT coalesce(sum(CASE WHEN a.value IS NOT NULL THEN 1 ELSE 0 END
                          - CASE WHEN o.value IS NOT NULL THEN 1 ELSE 0 END), 0),
               count(*)
          INTO delta, n
          FROM added a LEFT JOIN old o ON o.path = a.path AND o.tenant = a.tenant;
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
    -- Called by state_at as the owner, whom the policies of the log and of
    -- snapshot_entries do not hold (snapshots cover every tenant): filter.
    t      text := goalrt.current_tenant();
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
             SELECT e.path, e.tenant, e.value, e.version, e.pos
               FROM goalrt.snapshot_entries e
              WHERE %s AND (e.tenant = $6 OR $6 = ''*'')
         ), f AS (
             SELECT * FROM goalrt.fold_changes($4, $5, $3) c WHERE c.tenant = $6 OR $6 = ''*''
         )
         SELECT coalesce(f.path, b.path)::text,
                CASE WHEN f.path IS NULL THEN b.value
                     ELSE goalrt.fold_value(b.value, f.reset, f.reset_value, f.inc) END,
                coalesce(b.version, 0) + coalesce(f.changes, 0),
                coalesce(f.last_pos, b.pos)
           FROM base b FULL JOIN f ON f.path = b.path AND f.tenant = b.tenant',
        CASE WHEN snap IS NULL THEN 'false'
             WHEN prefix IS NULL THEN 'int8range(e.valid_from, e.valid_to) @> $1 AND ($3 IS NULL OR e.path ~ $3)'
             ELSE 'e.path >= $2 COLLATE "C" AND e.path < ($2 || ''/'') COLLATE "C"
                   AND e.valid_from <= $1 AND (e.valid_to IS NULL OR e.valid_to > $1) AND e.path ~ $3'
        END)
    USING snap, prefix, regex, coalesce(snap, goalrt.base_pos()), at_pos, t;
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
    -- As the owner: the log's policy does not hold here (see state_fold).
    t     text := goalrt.current_tenant();
BEGIN
    IF NOT goalrt.valid_path(state_history.path) THEN
        RAISE EXCEPTION 'invalid path %: use dot-separated segments of letters, digits, _ - : @',
            coalesce(quote_literal(state_history.path), 'NULL') USING ERRCODE = 'GR003';
    END IF;
    IF start > 0 THEN
        SELECT e.value, e.version INTO cur, ver
          FROM goalrt.snapshot_entries e
         WHERE e.path = state_history.path AND int8range(e.valid_from, e.valid_to) @> start
           AND (e.tenant = t OR t = '*');
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
           AND (e.tenant = t OR t = '*')
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
