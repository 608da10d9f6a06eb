-- Queries of the event log, shared by the sync (psycopg) and async (asyncpg)
-- APIs. Each runs one goalrt SQL function or reads a goalrt view.

-- name: event_append
SELECT goalrt.append_event($1::text, $2::text, $3::jsonb, $4::jsonb);

-- name: events_append
SELECT id FROM goalrt.append_events($1::jsonb) AS id;

-- name: events_read
SELECT pos, id, stream, type, data, metadata, recorded_at, prev_hash, hash, db_role
  FROM goalrt.read_events($1::bigint, $2::integer, $3::text, $4::text, $5::boolean);

-- name: clock_tick
CALL goalrt.tick_commit($1::integer, NULL::bigint);

-- name: clock_head
SELECT head FROM goalrt.clock;

-- name: event_position
SELECT pos FROM goalrt.event_order WHERE event_id = $1::bigint;

-- name: chain_verify
SELECT ok, checked, first_bad_pos, problem FROM goalrt.verify_chain();

-- name: anchors_verify
SELECT ok, checked, first_bad_pos, problem, anchor_pos, anchor_hash
  FROM goalrt.verify_anchors($1::bigint[], $2::bytea[]);

-- name: chain_head
SELECT pos, hash FROM goalrt.chain_head();

-- name: appends_notify
SELECT pg_notify('goalrt_append', '');
