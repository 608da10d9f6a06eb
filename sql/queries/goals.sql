-- Queries of goals, shared by the sync (psycopg) and async (asyncpg) clients
-- and the worker. Each runs one goalrt SQL function or reads a goalrt table.

-- name: goal_type_register
SELECT goalrt.register_goal_type($1::text, $2::jsonb);

-- name: goal_type_schema
SELECT params_schema FROM goalrt.goal_types WHERE name = $1::text;

-- name: goal_submit
SELECT id, created FROM goalrt.submit_goal($1::text, $2::jsonb, $3::jsonb);

-- name: goals_submit
SELECT id, created FROM goalrt.submit_goals($1::jsonb);

-- name: goal_cancel
SELECT id, status FROM goalrt.cancel_goal($1::bigint, $2::text);

-- name: goal_get
SELECT id, name, params, status, priority, run_at, idempotency_key, parent_id, partition_key, plan_no, step_seq,
       lease_owner, lease_epoch, lease_expires_at, claims, result, last_error, created_at, updated_at, finished_at
  FROM goalrt.goals WHERE id = $1::bigint;

-- name: goal_steps
SELECT seq, plan_no, action, args, status, attempts, result, error, started_at, finished_at
  FROM goalrt.goal_steps WHERE goal_id = $1::bigint ORDER BY seq;

-- name: clock_tick
-- Position what has committed, so a goal's newest events are listed.
SELECT goalrt.tick();

-- name: goal_events
SELECT pos, id, stream, type, data, metadata, recorded_at, prev_hash, hash
  FROM goalrt.events WHERE stream = 'goal:' || $1::bigint ORDER BY pos;

-- name: goals_list
-- Newest first. Filters are planned per call (see read_events in the log).
SELECT id, name, status, priority, run_at, step_seq, claims, last_error, created_at, finished_at
  FROM goalrt.goals
 WHERE ($1::text IS NULL OR status = $1::text) AND ($2::text IS NULL OR name = $2::text)
 ORDER BY id DESC
 LIMIT $3::integer;

-- name: goals_count
SELECT status, count(*) FROM goalrt.goals GROUP BY status ORDER BY status;

-- name: workers_list
SELECT id, name, hostname, pid, concurrency, goal_types, actions, started_at, last_seen, now() - last_seen
  FROM goalrt.workers ORDER BY started_at, id;

-- name: worker_register
SELECT goalrt.register_worker_v1($1::text, $2::text, $3::text, $4::integer, $5::integer, $6::text[], $7::text[]);

-- name: worker_deregister
SELECT goalrt.deregister_worker_v1($1::text);

-- name: goals_claim
SELECT goal_id, name, params, epoch, plan_no, step_seq, action, args, attempt
  FROM goalrt.claim_goals_v1($1::text, $2::integer, $3::double precision, $4::text[]);

-- name: goals_plan
SELECT goal_id, outcome, step_seq, action, args, attempt
  FROM goalrt.plan_goals_v1($1::text, $2::jsonb, $3::double precision);

-- name: steps_complete
SELECT goal_id, outcome, step_seq, action, args, attempt, error
  FROM goalrt.complete_steps_v1($1::text, $2::jsonb, $3::double precision);

-- name: goals_fail
SELECT goal_id, outcome FROM goalrt.fail_goals_v1($1::text, $2::jsonb);

-- name: leases_heartbeat
SELECT goal_id FROM goalrt.heartbeat_v1($1::text, $2::bigint[], $3::bigint[], $4::double precision);

-- name: leases_release
SELECT goal_id FROM goalrt.release_goals_v1($1::text, $2::bigint[], $3::bigint[]);
