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

-- name: goal_retry
SELECT id, status, first_step FROM goalrt.retry_goal($1::bigint, $2::integer, $3::text);

-- name: goals_done_notify
SELECT pg_notify($1::text, $2::text);

-- name: goal_get
SELECT id, name, params, status, priority, run_at, idempotency_key, parent_id, partition_key, plan_no, step_seq,
       lease_owner, lease_epoch, lease_expires_at, claims, result, last_error, created_at, updated_at, finished_at,
       wake_at, deadline_at, blocked_on, parent_step, goalrt.unserved_action(g)
  FROM goalrt.goals g WHERE id = $1::bigint;

-- name: goal_steps
SELECT seq, plan_no, action, args, status, attempts, result, error, started_at, finished_at, kind, label,
       progress, progress_message, progress_at
  FROM goalrt.goal_steps WHERE goal_id = $1::bigint ORDER BY seq;

-- name: goal_results
-- The results of a goal's completed, labelled steps (for ctx.results()).
SELECT label, result FROM goalrt.goal_steps
 WHERE goal_id = $1::bigint AND status = 'complete' AND label IS NOT NULL ORDER BY seq;

-- name: goal_resume
SELECT id, outcome FROM goalrt.resume_goal($1::bigint, $2::jsonb, $3::text);

-- name: goal_tree
SELECT id, parent_id, depth, name, status, step_seq, result, last_error FROM goalrt.goal_tree($1::bigint);

-- name: goals_waiting
SELECT id, name, seq, kind, action, args, timeout_at, waiting_since, open_children
  FROM goalrt.waiting_goals ORDER BY id DESC LIMIT $1::integer;

-- name: limit_set
SELECT action, key_arg, max_concurrent, rate, per_seconds, burst FROM goalrt.set_limit($1::text, $2::jsonb);

-- name: limit_drop
SELECT goalrt.drop_limit($1::text, $2::text);

-- name: limits_list
SELECT l.action, l.key_arg, l.max_concurrent, l.rate, l.per_seconds, l.burst,
       (SELECT count(*) FROM goalrt.limit_holders h WHERE h.action = l.action AND h.key_arg = l.key_arg),
       (SELECT count(*) FROM goalrt.goals g
         WHERE g.blocked_on IS NOT NULL
           AND left(g.blocked_on, length(l.action || '|' || l.key_arg || '|')) = l.action || '|' || l.key_arg || '|')
  FROM goalrt.limits l ORDER BY l.action, l.key_arg;

-- name: schedule_set
SELECT name, goal_name, params, cron, extract(epoch FROM every)::float8, timezone, catch_up, enabled, next_at,
       last_tick, last_goal_id, fired, skipped, last_error, gdl_version, updated_at, now()
  FROM goalrt.set_schedule($1::text, $2::text, $3::jsonb, $4::jsonb);

-- name: schedule_drop
SELECT goalrt.drop_schedule($1::text);

-- name: schedules_list
SELECT name, goal_name, params, cron, extract(epoch FROM every)::float8, timezone, catch_up, enabled, next_at,
       last_tick, last_goal_id, fired, skipped, last_error, gdl_version, updated_at, now()
  FROM goalrt.schedules ORDER BY name;

-- name: schedules_next
-- Seconds until the next schedule is due (NULL: none), and whether one waits
-- for its first tick to be computed: one look at schedules_next_idx.
SELECT extract(epoch FROM (SELECT min(next_at) FROM goalrt.schedules WHERE enabled) - clock_timestamp())::float8,
       EXISTS (SELECT 1 FROM goalrt.schedules WHERE enabled AND next_at IS NULL);

-- name: schedules_due
SELECT name, revision, cron, extract(epoch FROM every)::float8 AS every, timezone, catch_up, next_at, updated_at,
       now() AS now
  FROM goalrt.schedules
 WHERE enabled AND (next_at IS NULL OR next_at <= now())
 ORDER BY next_at NULLS FIRST
 LIMIT $1;

-- name: schedules_fire
SELECT name, outcome, goal_ids FROM goalrt.fire_schedules_v1($1::jsonb);

-- name: timers_wake
SELECT goalrt.wake_due_v1($1::integer);

-- name: timers_next
-- Seconds until the next goal is due (a sleep ends, a wait times out, a
-- delayed or parked goal may run): an idle worker sleeps no longer.
SELECT extract(epoch FROM min(wake_at) - clock_timestamp())::float8 FROM goalrt.goals WHERE wake_at IS NOT NULL;

-- name: clock_tick
-- Position what has committed, so a goal's newest events are listed.
CALL goalrt.tick_commit(200, NULL::bigint);

-- name: goal_events
SELECT pos, id, stream, type, data, metadata, recorded_at, prev_hash, hash, db_role
  FROM goalrt.events WHERE stream = 'goal:' || $1::bigint ORDER BY pos;

-- name: goals_list
-- Newest first. Filters are planned per call (see read_events in the log).
SELECT id, name, status, priority, run_at, step_seq, claims, last_error, created_at, finished_at,
       goalrt.unserved_action(g)
  FROM goalrt.goals g
 WHERE ($1::text IS NULL OR status = $1::text) AND ($2::text IS NULL OR name = $2::text)
 ORDER BY id DESC
 LIMIT $3::integer;

-- name: goals_count
SELECT status, count(*) FROM goalrt.goals GROUP BY status ORDER BY status;

-- name: workers_list
SELECT id, name, hostname, pid, concurrency, goal_types, actions, started_at, last_seen, now() - last_seen,
       partitions, partition_count
  FROM goalrt.workers ORDER BY started_at, id;

-- name: worker_register
SELECT goalrt.register_worker_v2($1::text, $2::text, $3::text, $4::integer, $5::integer, $6::text[], $7::text[],
                                 $8::integer[], $9::integer);

-- name: worker_deregister
SELECT goalrt.deregister_worker_v1($1::text);

-- name: goals_claim
-- With a goal planned already, the GDL version its plan was made with (its
-- last goal.planned): the worker re-plans a plan of another version than its own.
SELECT c.goal_id, c.name, c.params, c.epoch, c.plan_no, c.step_seq, c.action, c.args, c.attempt, c.trace_context,
       CASE WHEN c.step_seq IS NOT NULL THEN
           (SELECT (e.data -> 'planner' ->> 'gdl_version')::bigint FROM goalrt.event_data e
             WHERE e.stream = 'goal:' || c.goal_id AND e.type = 'goal.planned'
             ORDER BY e.id DESC LIMIT 1)
       END AS plan_gdl_version
  FROM goalrt.claim_goals_v3($1::text, $2::integer, $3::double precision, $4::text[], $5::integer[], $6::integer,
                              $7::double precision) c;

-- name: goals_plan
SELECT goal_id, outcome, step_seq, action, args, attempt
  FROM goalrt.plan_goals_v1($1::text, $2::jsonb, $3::double precision);

-- name: steps_complete
SELECT goal_id, outcome, step_seq, action, args, attempt, error
  FROM goalrt.complete_steps_v1($1::text, $2::jsonb, $3::double precision);

-- name: step_start
-- Take the goal's start lock and say whether its step may start (see step_start_v1).
SELECT goalrt.step_start_v1($1::text, $2::bigint, $3::bigint, $4::integer);

-- name: step_started
SELECT goalrt.step_started_v1($1::bigint);

-- name: step_progress
SELECT goalrt.step_progress_v1($1::text, $2::bigint, $3::bigint, $4::integer, $5::double precision, $6::text);

-- name: step_start_many
-- Try the start locks of many steps at once (see step_start_v2): start, refused or busy.
SELECT goal_id, outcome FROM goalrt.step_start_v2($1::text, $2::bigint[], $3::bigint[], $4::integer[]);

-- name: step_started_many
-- Give back the start locks of steps whose handlers have begun.
SELECT goalrt.step_started_v1(g) FROM unnest($1::bigint[]) AS t(g);

-- name: goals_fail
SELECT goal_id, outcome FROM goalrt.fail_goals_v1($1::text, $2::jsonb);

-- name: leases_heartbeat
SELECT goal_id FROM goalrt.heartbeat_v1($1::text, $2::bigint[], $3::bigint[], $4::double precision);

-- name: leases_release
SELECT goal_id FROM goalrt.release_goals_v1($1::text, $2::bigint[], $3::bigint[]);

-- name: goal_plan_history
-- How many plans a goal has had that count against its max_replans (a re-plan
-- under new GDL definitions, reason 'definitions', does not) and the action
-- steps that failed for good (for re-planning).
SELECT g.plan_no - (SELECT count(*) FROM goalrt.event_data e
                     WHERE e.stream = 'goal:' || g.id AND e.type = 'goal.planned'
                       AND e.data ->> 'reason' = 'definitions')::integer,
       (SELECT jsonb_agg(jsonb_build_object('action', s.action, 'args', s.args, 'error', s.error) ORDER BY s.seq)
          FROM goalrt.goal_steps s WHERE s.goal_id = g.id AND s.status = 'failed' AND s.kind = 'action')
  FROM goalrt.goals g WHERE g.id = $1::bigint;

-- name: gdl_current
SELECT version, definitions FROM goalrt.gdl_versions ORDER BY version DESC LIMIT 1;

-- name: gdl_version
SELECT max(version) FROM goalrt.gdl_versions;

-- name: queue_figures
-- The queue's figures, in one round trip (a worker's metrics, goalrt health and
-- metrics). Runnable: what a claim could take now (claim_goals_v2's test, less
-- a worker's own filters). Unpositioned: events committed since the clock's last
-- tick (position_events' test), whose oldest gives the tick lag. Expired: active
-- goals whose lease ran out (their worker died or stalled; a claim takes them over).
WITH runnable AS (
    SELECT count(*) AS n, extract(epoch FROM now() - min(g.run_at))::float8 AS oldest
      FROM goalrt.goals g
     WHERE g.status IN ('pending', 'active') AND g.wake_at IS NULL AND g.run_at <= now()
       AND (g.lease_expires_at IS NULL OR g.lease_expires_at <= now())
), unpositioned AS (
    SELECT count(*) AS n, extract(epoch FROM clock_timestamp() - min(u.recorded_at))::float8 AS oldest
      FROM (SELECT e.recorded_at FROM goalrt.event_data e
             WHERE e.xid >= (SELECT pg_snapshot_xmax(c.snapshot) FROM goalrt.clock c)
               AND pg_visible_in_snapshot(e.xid, pg_current_snapshot())
            UNION ALL
            SELECT e.recorded_at FROM goalrt.event_data e
             WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(c.snapshot) FROM goalrt.clock c))
               AND pg_visible_in_snapshot(e.xid, pg_current_snapshot())) u
)
SELECT r.n AS runnable, coalesce(r.oldest, 0) AS oldest_runnable,
       (SELECT count(*) FROM goalrt.goals WHERE status = 'waiting') AS waiting,
       (SELECT count(*) FROM goalrt.goals WHERE blocked_on IS NOT NULL) AS parked,
       (SELECT head FROM goalrt.clock) AS head,
       u.n AS unpositioned, coalesce(u.oldest, 0) AS tick_lag,
       (SELECT count(*) FROM goalrt.goals
         WHERE status = 'active' AND wake_at IS NULL AND lease_expires_at <= now()) AS expired
  FROM runnable r, unpositioned u;

-- name: goals_recent_figures
-- Among the newest $1 goals (the primary key walked backwards: bounded, however
-- many goals there are), those that ended in the last $2 seconds, by status: how
-- many, and the seconds from submit to end (p50, p95, p99, max).
SELECT status, count(*)::bigint,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY took), percentile_cont(0.95) WITHIN GROUP (ORDER BY took),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY took), max(took)
  FROM (SELECT g.status, extract(epoch FROM g.finished_at - g.created_at)::float8 AS took
          FROM (SELECT status, created_at, finished_at FROM goalrt.goals ORDER BY id DESC LIMIT $1::integer) g
         WHERE g.finished_at >= now() - make_interval(secs => $2::float8)) q
 GROUP BY status ORDER BY status;

-- name: goals_per_minute
-- Among the newest $1 goals (the primary key walked backwards: bounded, as in
-- goals_recent_figures), those that ended in each of the last $2 minutes (the
-- current one included, minutes on the database's clock), by status: how many,
-- and the seconds from submit to end (p50, p95). A minute when none ended has
-- one row with status NULL and count 0, so every minute is there, oldest first.
-- The last column, the same on every row: when the bound was reached, the
-- creation time of the oldest goal looked at (goals older than it are not
-- counted, even those that ended in the window); else NULL.
WITH newest AS (
    SELECT status, created_at, finished_at FROM goalrt.goals ORDER BY id DESC LIMIT $1::integer
), minutes AS (
    SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $2::integer - 1),
                           date_trunc('minute', now()), interval '1 minute') AS minute
), ended AS (
    SELECT g.status, date_trunc('minute', g.finished_at) AS minute,
           extract(epoch FROM g.finished_at - g.created_at)::float8 AS took
      FROM newest g
     WHERE g.finished_at >= date_trunc('minute', now()) - make_interval(mins => $2::integer - 1)
)
SELECT m.minute, e.status, count(e.status)::bigint,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY e.took), percentile_cont(0.95) WITHIN GROUP (ORDER BY e.took),
       (SELECT CASE WHEN count(*) >= $1::integer THEN min(created_at) END FROM newest)
  FROM minutes m LEFT JOIN ended e ON e.minute = m.minute
 GROUP BY m.minute, e.status ORDER BY m.minute, e.status;

-- name: goals_unserved
-- Of the first $1 runnable goals in claim order, those whose next step no live worker can run.
SELECT count(*) FROM (
    SELECT g FROM goalrt.goals g
     WHERE g.status IN ('pending', 'active') AND g.wake_at IS NULL
     ORDER BY g.priority DESC, g.run_at, g.id
     LIMIT $1::integer) q
 WHERE goalrt.unserved_action(q.g) IS NOT NULL;
