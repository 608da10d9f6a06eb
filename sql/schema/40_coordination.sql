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
--
-- Every function takes its locks in the lock order of 35_workers.sql: the
-- internal functions here (end_goal, child_ended, release_limits,
-- match_appended, recheck_waits) never wait for a goal or a bucket they
-- did not lock first; what another transaction holds is recorded in
-- wait_rechecks or limit_rechecks and done by the next wake_due_v1.
-------------------------------------------------------------------------------

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
    -- The wait's since point: the id of its goal's goal.submitted, or of
    -- its goal.waiting (0: any event). An event counts when it was appended
    -- after it (a larger id) or is ordered after it in the log (pos).
    since_id   bigint      NOT NULL DEFAULT 0,
    match_key  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Its goal's tenant: only that tenant's events match it.
    tenant     text        NOT NULL DEFAULT '' CHECK (tenant <> '*'),
    PRIMARY KEY (goal_id, alt)
);
-- The first scalar field of the filter as 'key=value' (NULL: no such
-- field): an appended event looks up only the waits whose key its data has,
-- so 10^5 goals waiting for one type of event, each for its own order, cost
-- an append one index probe, not a scan of them all.
CREATE INDEX goal_waits_match_idx ON goalrt.goal_waits (event_type, match_key);

COMMENT ON TABLE goalrt.goal_waits IS 'Goals waiting for an event: its type and what its data must contain.';

-- Goals to look at again (wake_due_v1 does, see recheck_waits): an event
-- wait whose start could not rule out an event it cannot see yet (an
-- append of the type was in flight, holding the type's lock), or whose
-- event's place in the log relative to the wait's since point was not
-- known yet; and a goal that a transaction had to act on but found locked
-- by another (lock order): its event wait matched, its parent or a child
-- of its ended. No foreign key: its check would lock the goal's row, which
-- an appender must not do.
CREATE TABLE goalrt.wait_rechecks (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    goal_id bigint      NOT NULL,
    due_at  timestamptz NOT NULL DEFAULT now(),
    -- Its goal's tenant: that tenant's (or an all-tenant) worker looks again.
    tenant  text        NOT NULL DEFAULT '' CHECK (tenant <> '*')
);
CREATE INDEX wait_rechecks_due_idx ON goalrt.wait_rechecks (due_at);

COMMENT ON TABLE goalrt.wait_rechecks IS
    'Goals to look at again: an event wait that could not see every event, or a goal that was locked when it had to change.';

-- Events ordered in the log after an event with a larger id (their
-- transaction was still open when a later-appended one was positioned):
-- the only events whose order by pos and by id disagree. A wait finds here
-- those appended before its since point but ordered after it, without
-- scanning the log since. goalrt's own goal.* and step.* events, which no
-- wait can be for, are left out. Written by the trigger below on each tick.
CREATE TABLE goalrt.late_events (
    pos      bigint PRIMARY KEY,
    event_id bigint NOT NULL,
    type     text   NOT NULL
);
CREATE INDEX late_events_type_idx ON goalrt.late_events (type, pos);

COMMENT ON TABLE goalrt.late_events IS
    'Events positioned after an event with a larger id: where the log''s order and the id order disagree.';

-- A statement trigger: one run per tick (a tick positions its batch with
-- one INSERT), never per event. A batch is in id order, so only its events
-- below the largest id positioned before it are late.
CREATE FUNCTION goalrt.note_late_events() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    INSERT INTO goalrt.late_events (pos, event_id, type)
    SELECT n.pos, n.event_id, e.type
      FROM new_rows n
      JOIN goalrt.event_data e ON e.id = n.event_id
     WHERE n.event_id < (SELECT o.event_id FROM goalrt.event_order o
                          WHERE o.pos < (SELECT min(m.pos) FROM new_rows m)
                          ORDER BY o.event_id DESC LIMIT 1)
       AND e.type !~ '^(goal|step)\.';
    RETURN NULL;
END
$$;

CREATE TRIGGER event_order_late_events
    AFTER INSERT ON goalrt.event_order REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION goalrt.note_late_events();

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

-- Keys whose parked goals must be looked at again: a slot was freed while
-- another transaction held the key's bucket (an admission that may park a
-- goal the release cannot see yet). wake_due_v1 wakes a goal parked on the
-- key once no transaction holds the bucket.
CREATE TABLE goalrt.limit_rechecks (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action  text   NOT NULL,
    key_arg text   NOT NULL,
    key     text   NOT NULL
);

COMMENT ON TABLE goalrt.limit_rechecks IS
    'Limit keys whose parked goals to wake once their bucket is free: a slot was freed while it was locked.';

-- The internal functions below (lock_goals, lock_limits, release_limits,
-- admit_step, insert_plan, end_goal, advance_goal, finish_wait,
-- child_ended) carry no SET clause:
-- they run only inside goalrt's functions, which set search_path,
-- enable_seqscan and jit for them, and a SET clause costs tens of
-- microseconds on every call.

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

-- Look back for an event of p_type whose data contains one of alts and
-- that counts for a wait with since point p_since (see goal_waits): hit
-- is the first one ({"id", "stream", "type", "data"}) or NULL. settled is
-- false when an event this cannot see or place yet may still count; the
-- caller then records a recheck (wait_rechecks) rather than waiting here.
--
-- Appenders hold the type's lock (shared) from their match to their
-- commit. Holding it exclusively here means no append that matched before
-- this wait existed is still open: each has committed (so it is seen
-- below) or rolled back. It is only tried, never waited for: a slow
-- client must not stall the worker starting a wait.
CREATE FUNCTION goalrt.wait_look_back(p_type text, alts jsonb, p_since bigint, OUT hit jsonb, OUT settled boolean)
LANGUAGE plpgsql AS $$
DECLARE
    snap      pg_snapshot;
    since_pos bigint;
    ev        record;
    -- The waiting goal's tenant (its since point is one of its events):
    -- the log's policy does not hold the owner, so filter by hand.
    t         text := coalesce((SELECT e.tenant FROM goalrt.event_data e WHERE e.id = p_since),
                               goalrt.current_tenant());
BEGIN
    settled := pg_try_advisory_xact_lock('goalrt.goal_waits'::regclass::oid::integer, goalrt.wait_lock_key(p_type));
    IF settled THEN
        -- A lock out of the order (35_workers.sql): this transaction waits for no bucket any more.
        PERFORM set_config('goalrt.late_locks', 'on', true);
    END IF;
    -- Appended after the since point.
    SELECT e.id, e.stream, e.type, e.data INTO ev FROM goalrt.event_data e
     WHERE e.type = p_type AND e.id > p_since AND e.tenant = t
       AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
     ORDER BY e.id LIMIT 1;
    IF NOT FOUND AND p_since > 0 THEN
        -- Appended before it but ordered after it. The clock is read first:
        -- an event positioned after that read is still taken for unpositioned.
        SELECT c.snapshot INTO snap FROM goalrt.clock c;
        since_pos := (SELECT o.pos FROM goalrt.event_order o WHERE o.event_id = p_since);
        IF since_pos IS NULL THEN
            -- Neither it nor an event appended before it has a position (a
            -- positioned one is ordered before it). Such an event, committed
            -- before this wait's lock was tried, joins the since point's
            -- batch, ordered before it, unless a tick in flight took its
            -- snapshot between their commits. With the clock's lock free
            -- (no tick in flight) and the since point still without a
            -- position after that, none can be after it. The since point
            -- of this very transaction (since="wait") has no such question.
            IF (SELECT e.xid FROM goalrt.event_data e WHERE e.id = p_since) = pg_current_xact_id() THEN
                RETURN;
            END IF;
            IF pg_try_advisory_lock_shared('goalrt.clock'::regclass::oid::integer, 1) THEN
                PERFORM pg_advisory_unlock_shared('goalrt.clock'::regclass::oid::integer, 1);
                IF NOT EXISTS (SELECT 1 FROM goalrt.event_order o WHERE o.event_id = p_since) THEN
                    RETURN;
                END IF;
            END IF;
            settled := false;
            RETURN;
        END IF;
        SELECT e.id, e.stream, e.type, e.data INTO ev
          FROM goalrt.late_events l JOIN goalrt.event_data e ON e.id = l.event_id
         WHERE l.type = p_type AND l.pos > since_pos AND l.event_id < p_since AND e.tenant = t
           AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
         ORDER BY l.pos LIMIT 1;
        IF ev.id IS NULL THEN
            -- Committed and not positioned yet (the next tick's batch, found
            -- as tick() finds it): their positions will be larger.
            SELECT e.id, e.stream, e.type, e.data INTO ev
              FROM (SELECT e0.* FROM goalrt.event_data e0
                     WHERE e0.xid >= pg_snapshot_xmax(snap)
                    UNION ALL
                    SELECT e0.* FROM goalrt.event_data e0
                     WHERE e0.xid = ANY (ARRAY(SELECT pg_snapshot_xip(snap)))) e
             WHERE e.type = p_type AND e.id < p_since AND NOT pg_visible_in_snapshot(e.xid, snap)
               AND e.xid <> pg_current_xact_id() AND e.tenant = t
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
             ORDER BY e.id LIMIT 1;
        END IF;
    END IF;
    IF ev.id IS NOT NULL THEN
        hit := jsonb_build_object('id', ev.id, 'stream', ev.stream, 'type', ev.type, 'data', ev.data);
    END IF;
END
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
    ELSIF step ? 'max_attempts' AND jsonb_typeof(step -> 'max_attempts') <> 'null'
          AND (jsonb_typeof(step -> 'max_attempts') <> 'number' OR (step ->> 'max_attempts') !~ '^[0-9]{1,9}$'
               OR (step ->> 'max_attempts')::integer < 1) THEN
        RETURN label || '.max_attempts must be an integer from 1 to 999999999';
    END IF;
    IF goalrt.json_too_deep(a) THEN
        PERFORM goalrt.json_depth_error(label || '.args', a);
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

-- The first step of the lock order (35_workers.sql): lock goals `ids` and
-- the unfinished goals of their subtrees, in id order, waiting for each.
-- Returns the ids locked. A child created meanwhile under one of them is
-- not locked here: end_goal takes it without waiting, or leaves it to a
-- recheck.
CREATE FUNCTION goalrt.lock_goals(ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    locked bigint[];
BEGIN
    -- The common case first: no unfinished child under any of them (an
    -- index probe on goals_parent_idx), so the goals alone are locked,
    -- without walking a tree.
    IF NOT EXISTS (SELECT 1 FROM goalrt.goals k
                    WHERE k.parent_id = ANY (ids) AND k.status IN ('pending', 'active', 'waiting')) THEN
        SELECT array_agg(q.id ORDER BY q.id) INTO locked FROM (
            SELECT g.id FROM goalrt.goals g WHERE g.id = ANY (ids) ORDER BY g.id FOR NO KEY UPDATE) q;
        RETURN coalesce(locked, '{}');
    END IF;
    SELECT array_agg(q.id ORDER BY q.id) INTO locked FROM (
        SELECT g.id FROM goalrt.goals g
         WHERE g.id IN (WITH RECURSIVE t AS (
                            SELECT g0.id FROM goalrt.goals g0 WHERE g0.id = ANY (ids)
                            UNION
                            SELECT k.id FROM goalrt.goals k JOIN t ON k.parent_id = t.id
                             WHERE k.status IN ('pending', 'active', 'waiting'))
                        SELECT t.id FROM t)
         ORDER BY g.id
           FOR NO KEY UPDATE) q;
    RETURN coalesce(locked, '{}');
END
$$;

-- The limit keys that the slots held by goals `ids` use and that the steps
-- `starts` ([{"action", "args"}]) would take, with the tokens of a new
-- bucket for each.
CREATE FUNCTION goalrt.limit_keys(ids bigint[], starts jsonb)
RETURNS TABLE (action text, key_arg text, key text, tokens double precision)
LANGUAGE sql STABLE AS $$
    SELECT k.action, k.key_arg, k.key, coalesce(l.burst, l.rate, 0)::double precision
      FROM (SELECT h.action, h.key_arg, h.key FROM goalrt.limit_holders h WHERE h.goal_id = ANY (ids)
            UNION
            SELECT l0.action, l0.key_arg,
                   CASE WHEN l0.key_arg = '' THEN '' ELSE coalesce(s -> 'args' ->> l0.key_arg, '') END
              FROM jsonb_array_elements(coalesce(starts, '[]')) AS t(s)
              JOIN goalrt.limits l0 ON l0.action = s ->> 'action') k
      JOIN goalrt.limits l ON l.action = k.action AND l.key_arg = k.key_arg
$$;

-- The second step of the lock order: lock the buckets of limit_keys(ids,
-- starts) in key order, waiting for each; a bucket not made yet is made
-- (full, as admit_step makes it). With `wait` false nothing is waited for
-- and nothing made: returns whether every bucket was free (those that were
-- stay locked).
CREATE FUNCTION goalrt.lock_limits(ids bigint[], starts jsonb, wait boolean DEFAULT true) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    wanted integer;
    got    integer;
BEGIN
    IF wait THEN
        -- The conflict branch locks an existing bucket though `WHERE false` updates nothing.
        INSERT INTO goalrt.limit_buckets AS b (action, key_arg, key, tokens, refilled_at)
        SELECT k.action, k.key_arg, k.key, k.tokens, clock_timestamp()
          FROM goalrt.limit_keys(ids, starts) k
         ORDER BY k.action, k.key_arg, k.key
        ON CONFLICT ON CONSTRAINT limit_buckets_pkey DO UPDATE SET tokens = b.tokens WHERE false;
        RETURN true;
    END IF;
    SELECT count(*) INTO wanted FROM goalrt.limit_keys(ids, starts);
    SELECT count(*) INTO got FROM (
        SELECT 1 FROM goalrt.limit_buckets b
          JOIN goalrt.limit_keys(ids, starts) k ON k.action = b.action AND k.key_arg = b.key_arg AND k.key = b.key
         ORDER BY b.action, b.key_arg, b.key
           FOR UPDATE OF b SKIP LOCKED) q;
    RETURN got = wanted;
END
$$;

-- Free the concurrency slots a goal holds, and wake one goal parked on each.
-- The bucket's row lock comes first: an admission parks goals while holding
-- it, so a release that holds it sees every goal parked on the key (without
-- it, a goal parked meanwhile would sleep with the slot free). The lock is
-- not waited for (lock order): when another transaction holds the bucket,
-- the slot is freed all the same and the key left in limit_rechecks, for
-- wake_due_v1 to wake a parked goal once that transaction is over.
CREATE FUNCTION goalrt.release_limits(p_goal bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    h     record;
    woken bigint;
    held  boolean;
BEGIN
    FOR h IN SELECT lh.action, lh.key_arg, lh.key FROM goalrt.limit_holders lh
              WHERE lh.goal_id = p_goal ORDER BY lh.action, lh.key_arg, lh.key
    LOOP
        -- Locks out of the order from here on: this transaction waits for no bucket any more.
        PERFORM set_config('goalrt.late_locks', 'on', true);
        PERFORM 1 FROM goalrt.limit_buckets lb
         WHERE lb.action = h.action AND lb.key_arg = h.key_arg AND lb.key = h.key FOR UPDATE SKIP LOCKED;
        held := FOUND;
        DELETE FROM goalrt.limit_holders lh
         WHERE lh.goal_id = p_goal AND lh.action = h.action AND lh.key_arg = h.key_arg;
        IF NOT held THEN
            INSERT INTO goalrt.limit_rechecks (action, key_arg, key) VALUES (h.action, h.key_arg, h.key);
            PERFORM pg_notify('goalrt_goals', '');
            CONTINUE;
        END IF;
        UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
         WHERE g.id = (SELECT b.id FROM goalrt.goals b
                        WHERE b.blocked_on = h.action || '|' || h.key_arg || '|' || h.key
                        ORDER BY b.priority DESC, b.id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED)
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
-- record goal.planned (with `reason`, the planner's `detail`, and the
-- worker and epoch of the lease it was made under, if any). Returns
-- the first new step, NULL for an empty plan. The caller holds the goal's
-- row lock.
CREATE FUNCTION goalrt.insert_plan(p_goal bigint, steps jsonb, reason text, detail jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    g     goalrt.goals;
    first integer;
BEGIN
    IF goalrt.json_too_deep(detail) THEN
        PERFORM goalrt.json_depth_error(format('plan for goal %s: detail', p_goal), detail);
    END IF;
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal;
    UPDATE goalrt.goal_steps st SET status = 'superseded'
     WHERE st.goal_id = g.id AND st.status IN ('pending', 'running');
    first := coalesce((SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id), 0) + 1;
    INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, kind, action, args, label, max_attempts)
    SELECT g.id, first + i::integer - 1, g.plan_no + 1, coalesce(s ->> 'kind', 'action'), s ->> 'action',
           coalesce(s -> 'args', '{}'), s ->> 'label', (s ->> 'max_attempts')::integer
      FROM jsonb_array_elements(steps) WITH ORDINALITY AS t(s, i);
    UPDATE goalrt.goals SET plan_no = g.plan_no + 1, step_seq = NULL, updated_at = now() WHERE goals.id = g.id;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.planned',
            jsonb_strip_nulls(jsonb_build_object('goal_id', g.id, 'plan_no', g.plan_no + 1, 'first_seq', first,
                                                 'steps', steps, 'reason', reason, 'planner', detail,
                                                 'worker', g.lease_owner,
                                                 'epoch', CASE WHEN g.lease_owner IS NOT NULL THEN g.lease_epoch END)));
    RETURN CASE WHEN jsonb_array_length(steps) > 0 THEN first END;
END
$$;

-- Leave goal p_goal, which another transaction holds, to wake_due_v1 to
-- look at again (recheck_waits) once that transaction is over.
CREATE FUNCTION goalrt.recheck_later(p_goal bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO goalrt.wait_rechecks (goal_id) VALUES (p_goal);
    PERFORM pg_notify('goalrt_goals', '');
END
$$;

-- End a goal: complete, failed or cancelled. Cancels its open steps, frees
-- its limits, records goal.<status>, tells a worker running it to stop,
-- cancels its unfinished child goals, and lets its parent know. Does
-- nothing to a goal already ended. Takes the goal's start lock (shared,
-- see step_start_v1): no step of it starts once this has committed.
-- Waits for no row lock (lock order): a goal another transaction holds
-- (this one, when the caller did not lock it; a child) is left to a
-- recheck, which cancels it if its parent has ended, and its subtree's
-- start locks are taken here, so none of its steps starts meanwhile.
CREATE FUNCTION goalrt.end_goal(p_goal bigint, p_status text, p_result jsonb, p_error text, detail jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g goalrt.goals;
    c bigint;
BEGIN
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM goalrt.goals WHERE goals.id = p_goal AND goals.status IN ('pending', 'active', 'waiting')) THEN
            PERFORM goalrt.recheck_later(p_goal);
            PERFORM pg_advisory_xact_lock_shared('goalrt.goals'::regclass::oid::integer, (t.id & 2147483647)::integer)
               FROM (WITH RECURSIVE t AS (
                         SELECT p_goal AS id
                         UNION
                         SELECT k.id FROM goalrt.goals k JOIN t ON k.parent_id = t.id
                          WHERE k.status IN ('pending', 'active', 'waiting'))
                     SELECT t.id FROM t ORDER BY t.id) t;
        END IF;
        RETURN;
    END IF;
    IF g.status IN ('complete', 'failed', 'cancelled') THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock_shared('goalrt.goals'::regclass::oid::integer, (g.id & 2147483647)::integer);
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
-- p_worker when given, if that worker can run it (it registered the action,
-- or never registered) and its limits admit it; else it is left for a
-- worker that can run it to claim (a hand-over). A wait starts here: the
-- goal waits without a lease, or moves on at once when what it waits for
-- is already there. Returns 'continue', 'released', 'blocked', 'waiting'
-- or 'complete'. The caller holds the goal's row lock.
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
    lb       record;
    logged   boolean := false;
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
            IF p_worker IS NOT NULL AND g.lease_owner = p_worker
               AND NOT EXISTS (SELECT 1 FROM goalrt.workers w
                                WHERE w.id = p_worker AND NOT s.action = ANY (w.actions)) THEN
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
        logged := false;
        IF s.kind = 'sleep' THEN
            due := coalesce((s.args ->> 'until')::timestamptz,
                            now() + make_interval(secs => (s.args ->> 'seconds')::float8));
            IF due <= now() THEN
                res := jsonb_build_object('slept_until', due);
            END IF;
        ELSIF s.kind = 'event' THEN
            alts := CASE WHEN jsonb_typeof(s.args -> 'where') = 'array' THEN s.args -> 'where'
                         ELSE jsonb_build_array(coalesce(s.args -> 'where', '{}')) END;
            -- The since point: the goal's submit, or this wait's goal.waiting
            -- (written first, so that its id exists).
            IF coalesce(s.args ->> 'since', 'submit') = 'submit' THEN
                SELECT min(e.id) INTO since FROM goalrt.event_data e
                 WHERE e.stream = 'goal:' || g.id AND e.type = 'goal.submitted';
            ELSE
                INSERT INTO goalrt.event_data (stream, type, data)
                VALUES ('goal:' || g.id, 'goal.waiting',
                        jsonb_strip_nulls(jsonb_build_object(
                            'goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args, 'until', due)))
                RETURNING event_data.id INTO since;
                logged := true;
            END IF;
            since := coalesce(since, 0);
            lb := goalrt.wait_look_back(s.args ->> 'event', alts, since);
            IF lb.hit IS NOT NULL THEN
                res := jsonb_build_object('event', lb.hit);
            ELSE
                DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
                INSERT INTO goalrt.goal_waits (goal_id, alt, seq, event_type, filter, since_id, match_key)
                SELECT g.id, f.n::integer - 1, s.seq, s.args ->> 'event', f.v, since,
                       (goalrt.match_keys(f.v))[1]
                  FROM jsonb_array_elements(alts) WITH ORDINALITY AS f(v, n);
                IF NOT lb.settled THEN
                    INSERT INTO goalrt.wait_rechecks (goal_id) VALUES (g.id);
                END IF;
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
        IF NOT logged THEN
            INSERT INTO goalrt.event_data (stream, type, data)
            VALUES ('goal:' || g.id, 'goal.waiting',
                    jsonb_strip_nulls(jsonb_build_object(
                        'goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args, 'until', due,
                        'children', CASE WHEN s.kind = 'children' THEN kids END)));
        END IF;
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
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = p_goal FOR NO KEY UPDATE;
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
-- 'continue'. Locks the parent without waiting (lock order): a parent
-- another transaction holds is left to a recheck, which calls this with
-- p_child NULL: the child that decides is then the first to fail (mode
-- all), the first to complete (mode any), else the last to end.
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
    decides  bigint := p_child;
BEGIN
    SELECT * INTO p FROM goalrt.goals WHERE goals.id = p_parent FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM goalrt.goals WHERE goals.id = p_parent AND goals.status = 'waiting') THEN
            PERFORM goalrt.recheck_later(p_parent);
        END IF;
        RETURN;
    END IF;
    IF p.status <> 'waiting' THEN
        RETURN;
    END IF;
    SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = p.id AND st.seq = p.step_seq;
    IF s.kind <> 'children' THEN
        RETURN;
    END IF;
    mode := coalesce(s.args ->> 'mode', 'all');
    IF decides IS NULL AND mode = 'all' AND coalesce(s.args ->> 'on_failure', 'fail') = 'fail' THEN
        SELECT k.id INTO decides FROM goalrt.goals k
         WHERE k.parent_id = p.id AND k.parent_step = s.seq AND k.status IN ('failed', 'cancelled')
         ORDER BY k.finished_at, k.id LIMIT 1;
    ELSIF decides IS NULL AND mode = 'any' THEN
        SELECT k.id INTO decides FROM goalrt.goals k
         WHERE k.parent_id = p.id AND k.parent_step = s.seq AND k.status = 'complete'
         ORDER BY k.finished_at, k.id LIMIT 1;
    END IF;
    IF decides IS NULL THEN
        SELECT k.id INTO decides FROM goalrt.goals k
         WHERE k.parent_id = p.id AND k.parent_step = s.seq AND k.status IN ('complete', 'failed', 'cancelled')
         ORDER BY k.finished_at DESC, k.id DESC LIMIT 1;
    END IF;
    SELECT * INTO c FROM goalrt.goals WHERE goals.id = decides;
    IF NOT FOUND OR c.parent_step IS DISTINCT FROM s.seq THEN
        RETURN;
    END IF;
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
-- depends on a notification (a waiting goal that another transaction
-- holds is not waited for: it is left to a recheck, seen once this
-- commits, which finds the event). append_event, append_events, change_state
-- (state.changed) and the events a step emits call it; goalrt's own goal.*
-- and step.* events are not matched (waiting for them is refused).
-- The shared lock per event type, taken after the insert and held to
-- commit, pairs with the exclusive one a wait's look-back tries
-- (wait_look_back): one of the two always sees the other.
-- An event counts for a wait when it was appended after the wait's since
-- point (a larger id) or the since point already has a position (this
-- event's, given at its commit, will be larger). Otherwise (appended
-- before it, neither positioned yet) only the tick can tell their order:
-- the goal is left for a recheck (wait_rechecks), seen once this commits.
CREATE FUNCTION goalrt.match_appended(types text[], ids bigint[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    k    integer;
    m    record;
    free boolean;
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
        SELECT DISTINCT ON (q.goal_id) q.* FROM (
            SELECT w.goal_id, n.id, n.stream, n.type, n.data,
                   n.id > w.since_id
                   OR EXISTS (SELECT 1 FROM goalrt.event_order o WHERE o.event_id = w.since_id) AS counts
              FROM goalrt.event_data n
              CROSS JOIN LATERAL (
                  SELECT w0.goal_id, w0.since_id, w0.filter FROM goalrt.goal_waits w0
                   WHERE w0.event_type = n.type AND w0.match_key IS NULL AND w0.tenant = n.tenant
                  UNION ALL
                  SELECT w1.goal_id, w1.since_id, w1.filter FROM goalrt.goal_waits w1
                   WHERE w1.event_type = n.type AND w1.match_key = ANY (goalrt.match_keys(n.data))
                     AND w1.tenant = n.tenant
              ) w
             WHERE n.id = ANY (ids) AND (w.filter = '{}' OR n.data @> w.filter)) q
         ORDER BY q.goal_id, NOT q.counts, q.id
    LOOP
        IF m.counts THEN
            -- The goal is not waited for (lock order): one another transaction
            -- holds is looked at again once it is free, and finds this event then.
            PERFORM 1 FROM goalrt.goals g WHERE g.id = m.goal_id FOR NO KEY UPDATE SKIP LOCKED;
            free := FOUND;
        END IF;
        IF m.counts AND NOT free THEN
            PERFORM goalrt.recheck_later(m.goal_id);
        ELSIF m.counts THEN
            PERFORM goalrt.finish_wait(
                m.goal_id,
                jsonb_build_object('event', jsonb_build_object('id', m.id, 'stream', m.stream, 'type', m.type,
                                                               'data', m.data)),
                false, NULL);
        ELSE
            INSERT INTO goalrt.wait_rechecks (goal_id) VALUES (m.goal_id);
        END IF;
    END LOOP;
END
$$;

-- Look again at the goals of wait_rechecks that are due, at most
-- max_count, as the transaction that left them could not: a goal whose
-- parent has ended, or whose parent's children wait is over, is cancelled;
-- a goal waiting for children looks at them; a goal waiting for an event
-- looks back for it (found now, the goal resumes; still unsure, it is
-- looked at again a second later). Never waits: a goal another transaction
-- holds is skipped and looked at again a second later. Returns how many
-- goals it changed.
CREATE FUNCTION goalrt.recheck_waits(max_count integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r      record;
    g      goalrt.goals;
    s      goalrt.goal_steps;
    par    goalrt.goals;
    ps     goalrt.goal_steps;
    why    text;
    since  bigint;
    lb     record;
    alts   jsonb;
    n      integer := 0;
BEGIN
    FOR r IN SELECT q.id, q.goal_id FROM goalrt.wait_rechecks q
              WHERE q.due_at <= now() ORDER BY q.due_at LIMIT max_count FOR UPDATE SKIP LOCKED
    LOOP
        DELETE FROM goalrt.wait_rechecks q WHERE q.id = r.id;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = r.goal_id FOR NO KEY UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            IF EXISTS (SELECT 1 FROM goalrt.goals WHERE goals.id = r.goal_id) THEN
                INSERT INTO goalrt.wait_rechecks (goal_id, due_at) VALUES (r.goal_id, now() + interval '1 second');
            END IF;
            CONTINUE;
        END IF;
        IF g.status NOT IN ('pending', 'active', 'waiting') THEN
            CONTINUE;
        END IF;
        -- A child whose parent ended, or stopped waiting for it, while another transaction held it.
        SELECT * INTO par FROM goalrt.goals WHERE goals.id = g.parent_id;
        SELECT * INTO ps FROM goalrt.goal_steps st WHERE st.goal_id = g.parent_id AND st.seq = g.parent_step;
        why := CASE WHEN par.status IN ('complete', 'failed', 'cancelled')
                        THEN format('parent goal %s %s', par.id, par.status)
                    WHEN ps.status = 'failed' AND ps.error = 'wait_timeout' THEN 'the parent''s wait timed out'
                    WHEN ps.status = 'complete' AND ps.result ? 'first'
                        THEN format('child goal %s completed first', ps.result ->> 'first') END;
        IF why IS NOT NULL THEN
            PERFORM goalrt.end_goal(g.id, 'cancelled', NULL, why, jsonb_build_object('reason', why));
            n := n + 1;
            CONTINUE;
        END IF;
        IF g.status <> 'waiting' THEN
            CONTINUE;
        END IF;
        SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
        IF s.kind = 'children' THEN
            -- One of its children ended while another transaction held it.
            PERFORM goalrt.child_ended(g.id, NULL);
            n := n + 1;
            CONTINUE;
        END IF;
        SELECT min(w.since_id) INTO since FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
        IF since IS NULL THEN
            CONTINUE;
        END IF;
        alts := CASE WHEN jsonb_typeof(s.args -> 'where') = 'array' THEN s.args -> 'where'
                     ELSE jsonb_build_array(coalesce(s.args -> 'where', '{}')) END;
        lb := goalrt.wait_look_back(s.args ->> 'event', alts, since);
        IF lb.hit IS NOT NULL THEN
            PERFORM goalrt.finish_wait(g.id, jsonb_build_object('event', lb.hit), false, NULL);
            n := n + 1;
        ELSIF NOT lb.settled THEN
            INSERT INTO goalrt.wait_rechecks (goal_id, due_at) VALUES (g.id, now() + interval '1 second');
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- Act on what is due, at most max_count of each kind: delayed goals and
-- parked ones become claimable, sleeps end, waits time out, deadlines fail
-- their goals, and what other transactions left for later is done (a slot
-- freed while its bucket was locked, wait_rechecks). Every claim calls this
-- first; returns how many it handled. Never waits for a lock: what another
-- transaction holds is left for the next call.
CREATE FUNCTION goalrt.wake_due_v1(max_count integer DEFAULT 100) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    r     record;
    n     integer := 0;
    woken integer;
    freed bigint;
BEGIN
    -- Slots freed while their bucket was locked: once it is free, every goal
    -- parked on the key is visible, and one of them is woken.
    FOR r IN SELECT q.id, q.action, q.key_arg, q.key FROM goalrt.limit_rechecks q
              ORDER BY q.id LIMIT max_count FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM 1 FROM goalrt.limit_buckets lb
         WHERE lb.action = r.action AND lb.key_arg = r.key_arg AND lb.key = r.key FOR UPDATE SKIP LOCKED;
        IF NOT FOUND AND EXISTS (SELECT 1 FROM goalrt.limit_buckets lb
                                  WHERE lb.action = r.action AND lb.key_arg = r.key_arg AND lb.key = r.key) THEN
            CONTINUE;
        END IF;
        PERFORM set_config('goalrt.late_locks', 'on', true);
        DELETE FROM goalrt.limit_rechecks q WHERE q.id = r.id;
        UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL
         WHERE g.id = (SELECT b.id FROM goalrt.goals b
                        WHERE b.blocked_on = r.action || '|' || r.key_arg || '|' || r.key
                        ORDER BY b.priority DESC, b.id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED)
        RETURNING g.id INTO freed;
        n := n + CASE WHEN freed IS NULL THEN 0 ELSE 1 END;
    END LOOP;
    WITH due AS (
        SELECT g.id FROM goalrt.goals g
         WHERE g.wake_at <= now() AND g.status IN ('pending', 'active')
         ORDER BY g.wake_at LIMIT max_count
           FOR NO KEY UPDATE SKIP LOCKED
    )
    UPDATE goalrt.goals g SET wake_at = NULL, blocked_on = NULL FROM due WHERE g.id = due.id;
    GET DIAGNOSTICS woken = ROW_COUNT;
    n := n + woken + goalrt.recheck_waits(max_count);
    FOR r IN SELECT g.id, g.wake_at, s.kind
               FROM goalrt.goals g
               JOIN goalrt.goal_steps s ON s.goal_id = g.id AND s.seq = g.step_seq
              WHERE g.wake_at <= now() AND g.status = 'waiting'
              ORDER BY g.wake_at LIMIT max_count
                FOR NO KEY UPDATE OF g SKIP LOCKED
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
                FOR NO KEY UPDATE SKIP LOCKED
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

-- For `goalrt test` (`then advance D`): bring every timer of the unfinished
-- goals `seconds` closer (sleeps and wait timeouts: wake_at; deadlines;
-- delayed starts of pending goals: run_at), as if that much time had
-- passed; the caller then acts on the due ones (wake_due_v1). Returns the
-- goals changed. Only in a fork, a test's own copy: the main schema's
-- timers are real, and the call is refused there. Admins only.
CREATE FUNCTION goalrt.advance_timers(seconds double precision) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    home text;
    n    integer;
BEGIN
    home := (SELECT c.relnamespace::regnamespace::text FROM pg_class c WHERE c.oid = 'goalrt.goals'::regclass);
    -- ('goal' || 'rt': spelt so that a fork's copy of this function, whose
    -- qualified names are rewritten, still compares with the main schema.)
    IF home = 'goal' || 'rt' THEN
        RAISE EXCEPTION 'advance_timers works in a fork only (goalrt test): the timers of schema % are real', home
            USING ERRCODE = 'GR008';
    END IF;
    IF seconds IS NULL OR seconds < 0 OR seconds = 'infinity'::double precision THEN
        RAISE EXCEPTION 'seconds must be a finite number >= 0' USING ERRCODE = 'GR008';
    END IF;
    UPDATE goalrt.goals g
       SET wake_at = g.wake_at - make_interval(secs => seconds),
           deadline_at = g.deadline_at - make_interval(secs => seconds),
           run_at = CASE WHEN g.status = 'pending' AND g.run_at > now()
                         THEN greatest(g.run_at - make_interval(secs => seconds), now()) ELSE g.run_at END
     WHERE g.status IN ('pending', 'active', 'waiting')
       AND (g.wake_at IS NOT NULL OR g.deadline_at IS NOT NULL OR (g.status = 'pending' AND g.run_at > now()));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION goalrt.advance_timers(double precision) IS
    'goalrt test: bring the timers of a fork''s unfinished goals closer by seconds (refused in the main schema).';

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
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = resume_goal.goal_id FOR NO KEY UPDATE;
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
    IF goalrt.json_too_deep(data) THEN
        PERFORM goalrt.json_depth_error('data', data);
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
            RAISE EXCEPTION 'limit option % must be an integer from 1 to 999999999', f USING ERRCODE = 'GR008';
        END IF;
    END LOOP;
    -- A bucket's wait for its next token is up to `per` seconds, taken as an
    -- interval: a longer one overflows (or a tinier one underflows) there.
    IF o ? 'per' AND (jsonb_typeof(o -> 'per') <> 'number' OR (o ->> 'per')::numeric < 0.001
                      OR (o ->> 'per')::numeric > 31536000) THEN
        RAISE EXCEPTION 'limit option per must be a number of seconds from 0.001 to 31536000 (a year)'
            USING ERRCODE = 'GR008';
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
    -- Lock order (35_workers.sql): the goals the old limit parked, then its buckets.
    PERFORM 1 FROM goalrt.goals g
     WHERE g.blocked_on IS NOT NULL
       AND left(g.blocked_on, length(set_limit.action || '|' || coalesce(o ->> 'key', '') || '|'))
           = set_limit.action || '|' || coalesce(o ->> 'key', '') || '|'
     ORDER BY g.id FOR NO KEY UPDATE;
    PERFORM 1 FROM goalrt.limit_buckets b
     WHERE b.action = set_limit.action AND b.key_arg = coalesce(o ->> 'key', '') ORDER BY b.key FOR UPDATE;
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
    b text := drop_limit.action || '|' || coalesce(drop_limit.key_arg, '') || '|';
BEGIN
    -- Lock order (35_workers.sql): the goals it parked, then its buckets.
    PERFORM 1 FROM goalrt.goals g WHERE g.blocked_on IS NOT NULL AND left(g.blocked_on, length(b)) = b
     ORDER BY g.id FOR NO KEY UPDATE;
    PERFORM 1 FROM goalrt.limit_buckets lb
     WHERE lb.action = drop_limit.action AND lb.key_arg = coalesce(drop_limit.key_arg, '') ORDER BY lb.key FOR UPDATE;
    DELETE FROM goalrt.limits l WHERE l.action = drop_limit.action AND l.key_arg = coalesce(drop_limit.key_arg, '');
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM goalrt.limit_buckets lb WHERE lb.action = drop_limit.action AND lb.key_arg = coalesce(drop_limit.key_arg, '');
    DELETE FROM goalrt.limit_holders h WHERE h.action = drop_limit.action AND h.key_arg = coalesce(drop_limit.key_arg, '');
    -- Goals it parked may run now.
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
