-- Queries of the state, snapshots, replay and forks, shared by the sync
-- (psycopg) and async (asyncpg) APIs. Each runs one goalrt SQL function or
-- reads a goalrt view.

-- name: state_change
SELECT event_id, path, version, value FROM goalrt.change_state($1::jsonb, $2::text, $3::jsonb);

-- name: clock_tick
CALL goalrt.tick_commit(200, NULL::bigint);

-- name: clock_head
SELECT head FROM goalrt.clock;

-- name: state_get
SELECT path, value, version, pos, changed_at FROM goalrt.state WHERE path = $1::text;

-- name: state_version
SELECT version FROM goalrt.state_data WHERE path = $1::text;

-- name: state_list
-- The prefix range lets the C-collated primary key do the work; the regular
-- expression then picks exactly the paths the pattern selects.
SELECT path, value, version, pos, changed_at
  FROM goalrt.state
 WHERE ($1::text IS NULL OR path ~ goalrt.path_pattern_regex($1::text))
   AND ($2::text IS NULL OR (path >= $2::text COLLATE "C" AND path < ($2::text || '/') COLLATE "C"))
 ORDER BY path;

-- name: state_read_paths
-- What a planned goal reads (goalrt/worker/state_reads.py): the live paths in
-- $1, and those in each range [$2[i], $3[i]) of the C-collated primary key
-- that match the regular expression $4[i] (NULL: the whole range). One
-- statement, so one snapshot. A path in two of them comes back twice (the
-- same row). The lateral join reaches state_data by index once per range.
SELECT s.path, s.value, s.version
  FROM goalrt.state_data s
 WHERE s.path = ANY ($1::text[]) AND s.value IS NOT NULL
UNION ALL
SELECT s.path, s.value, s.version
  FROM unnest($2::text[], $3::text[], $4::text[]) AS r (low, high, regex)
 CROSS JOIN LATERAL (
        SELECT d.path, d.value, d.version
          FROM goalrt.state_data d
         WHERE d.path >= r.low COLLATE "C" AND d.path < r.high COLLATE "C"
           AND d.value IS NOT NULL AND (r.regex IS NULL OR d.path ~ r.regex)) s;

-- name: state_at
SELECT path, value, version, pos, changed_at FROM goalrt.state_at($1::bigint, $2::text);

-- name: state_replayed
SELECT path, value, version, pos FROM goalrt.state_fold($1::bigint, $2::text, false)
 WHERE value IS NOT NULL ORDER BY path;

-- name: pos_at_time
SELECT goalrt.pos_at($1::timestamptz);

-- name: state_history
SELECT pos, op, value, deleted, version, recorded_at FROM goalrt.state_history($1::text);

-- name: pattern_check
SELECT goalrt.path_pattern_regex($1::text), goalrt.path_pattern_prefix($1::text);

-- name: snapshot_create
SELECT id, pos, name, auto, tags, note, paths, written, created_at
  FROM goalrt.create_snapshot($1::text, $2::text[], $3::text);

-- name: snapshot_auto
SELECT goalrt.auto_snapshot($1::bigint);

-- name: snapshots_list
SELECT id, pos, name, auto, tags, note, paths, written, created_at
  FROM goalrt.snapshots
 WHERE NOT auto OR $1::boolean
 ORDER BY pos, id;

-- name: snapshot_get
SELECT id, pos, name, auto, tags, note, paths, written, created_at FROM goalrt.snapshots WHERE name = $1::text;

-- name: state_freeze
SELECT goalrt.state_freeze($1::integer);

-- name: materialized_copy
CREATE TEMP TABLE goalrt_replay_materialized ON COMMIT PRESERVE ROWS AS
SELECT s.path, s.value, s.version, coalesce(o.pos, s.inherited_pos) AS pos
  FROM goalrt.state_data s
  LEFT JOIN goalrt.event_order o ON o.event_id = s.event_id;

-- name: replay_compare
-- The first path (in byte order) where the materialized rows and the fold of
-- the log up to $1 disagree, tombstones included.
SELECT coalesce(m.path, r.path) AS path,
       m.value AS materialized_value, m.version AS materialized_version, m.pos AS materialized_pos,
       r.value AS replayed_value, r.version AS replayed_version, r.pos AS replayed_pos,
       m.path IS NOT NULL AS in_materialized, r.path IS NOT NULL AS in_replay
  FROM pg_temp.goalrt_replay_materialized m
  FULL JOIN goalrt.state_fold($1::bigint, NULL, false) r ON r.path = m.path
 WHERE m.path IS NULL OR r.path IS NULL
    OR m.value IS DISTINCT FROM r.value OR m.version <> r.version OR m.pos IS DISTINCT FROM r.pos
 ORDER BY coalesce(m.path, r.path) COLLATE "C"
 LIMIT 1;

-- name: replay_count
SELECT count(*) FROM pg_temp.goalrt_replay_materialized;

-- name: materialized_drop
DROP TABLE IF EXISTS pg_temp.goalrt_replay_materialized;

-- name: settings_get
SELECT value FROM goalrt.settings WHERE key = $1::text;

-- name: settings_set
INSERT INTO goalrt.settings (key, value) VALUES ($1::text, $2::jsonb)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
