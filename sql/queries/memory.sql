-- Queries of agent memory (docs/memory.md), shared by the sync (psycopg)
-- and async (asyncpg) APIs. Each runs one goalrt SQL function.

-- name: memory_status
SELECT vectors, cursor_pos, head, entries, embedder, dims FROM goalrt.memory_status();

-- name: memory_mode
SELECT vectors, embedder FROM goalrt.memory_mode();

-- name: memory_search
SELECT pos, event_id, stream, type, recorded_at, body, score, text_rank, vector_rank
  FROM goalrt.memory_search($1::text, $2::jsonb, $3::text, $4::timestamptz, $5::integer);

-- name: memory_pending
SELECT pos, event_id, stream, type, data FROM goalrt.memory_pending($1::integer);

-- name: memory_index
SELECT goalrt.memory_index($1::bigint, $2::bigint, $3::jsonb, $4::text, $5::integer);

-- name: memory_reset
SELECT goalrt.memory_reset();

-- name: memory_note
SELECT goalrt.append_event($1::text, 'memory.noted', $2::jsonb, '{}'::jsonb);

-- name: clock_tick
CALL goalrt.tick_commit($1::integer, NULL::bigint);

-- name: appends_notify
SELECT pg_notify('goalrt_append', '');
