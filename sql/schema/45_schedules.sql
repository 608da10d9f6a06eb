-------------------------------------------------------------------------------
-- Schedules
--
-- A schedule submits its goal at each tick of a cron expression (in a time
-- zone) or of a fixed interval. Workers fire them: each worker, at most
-- once per poll, reads the due schedules (one indexed query on next_at),
-- computes their ticks (in Python, with the cron evaluator the GDL compiler
-- checks with: goalrt/goals/schedules.py) and calls fire_schedules_v1,
-- which in one transaction locks each schedule (SKIP LOCKED), checks that
-- nobody advanced it since it was read (revision and next_at unchanged),
-- submits the goal of each tick with the idempotency key
-- schedule:<name>:<tick in UTC, ISO 8601> and advances next_at. So a tick
-- is submitted exactly once however many workers race: the one transaction
-- that advances next_at past it submits it, a crash rolls both back, and
-- the key makes a second submit of the same tick (a schedule dropped and
-- set again) return the first goal.
--
-- Who may change what: applications (goalrt_app) set and drop schedules, as
-- they submit goals. A schedule that GDL installed (gdl_version is set)
-- changes only by loading GDL, or by an admin (goalrt.caller_is_admin),
-- like the goal types GDL installs.
-------------------------------------------------------------------------------

CREATE TABLE goalrt.schedules (
    name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$'),
    goal_name    text NOT NULL,
    params       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(params) = 'object'),
    -- Exactly one of: a 5-field cron expression read in `timezone`, or an
    -- interval (ticks at its whole multiples since 1970-01-01T00:00Z).
    cron         text CHECK (cron <> '' AND length(cron) <= 200),
    every        interval CHECK (every >= interval '1 second' AND every <= interval '36500 days'),
    timezone     text NOT NULL DEFAULT 'UTC',
    -- What a pass does with the ticks missed while no worker fired them:
    -- all (submit each), latest (submit the newest), skip (submit none, but a
    -- tick at most a minute late).
    catch_up     text NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('skip', 'latest', 'all')),
    enabled      boolean NOT NULL DEFAULT true,
    -- The next tick. NULL: not computed yet; the next worker computes the
    -- first tick after updated_at.
    next_at      timestamptz,
    -- Bumped by every change of the schedule: a pass computed from an older
    -- revision is refused (fire_schedules_v1 answers 'moved').
    revision     bigint NOT NULL DEFAULT 1,
    last_tick    timestamptz,
    last_goal_id bigint,
    -- Ticks submitted, and ticks the catch_up policy skipped.
    fired        bigint NOT NULL DEFAULT 0,
    skipped      bigint NOT NULL DEFAULT 0,
    -- Why the last tick could not be submitted (an unknown goal type, params
    -- the goal type refuses, a cron the worker cannot read), else NULL.
    last_error   text,
    -- The GDL version that installed the schedule (NULL: set by hand).
    gdl_version  bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text NOT NULL DEFAULT session_user,
    CONSTRAINT schedules_one_timing CHECK ((cron IS NULL) <> (every IS NULL))
);

-- What the workers poll: the earliest next_at, and the due schedules.
CREATE INDEX schedules_next_idx ON goalrt.schedules (next_at NULLS FIRST) WHERE enabled;

COMMENT ON TABLE goalrt.schedules IS
    'Schedules: each tick (cron or every) submits the goal once, key schedule:<name>:<tick>; next_at is the next tick.';

-- Insert or replace a schedule (set_schedule and load_gdl call it; it checks
-- no permission). The next tick is kept when the timing is unchanged, else
-- cleared (a worker computes it) unless options give next_at.
CREATE FUNCTION goalrt.put_schedule(name text, goal_name text, params jsonb, options jsonb, version bigint)
RETURNS goalrt.schedules
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    o        jsonb := coalesce(options, '{}');
    bad      text;
    gt       goalrt.goal_types;
    problem  text;
    cr       text;
    ev       interval;
    tz       text := coalesce(o ->> 'timezone', 'UTC');
    policy   text := coalesce(o ->> 'catch_up', 'latest');
    first_at timestamptz;
    old      goalrt.schedules;
    r        goalrt.schedules;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$' THEN
        RAISE EXCEPTION 'invalid schedule name %: use letters, digits, _ . : - (starting with a letter or _)',
            coalesce(quote_literal(name), 'NULL') USING ERRCODE = 'GR008';
    END IF;
    IF jsonb_typeof(o) <> 'object' THEN
        RAISE EXCEPTION 'schedule options must be a JSON object' USING ERRCODE = 'GR008';
    END IF;
    SELECT min(k) INTO bad FROM jsonb_object_keys(o) k
     WHERE k NOT IN ('cron', 'every', 'timezone', 'catch_up', 'enabled', 'next_at');
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'schedule option % is not an option (cron, every, timezone, catch_up, enabled, next_at)', bad
            USING ERRCODE = 'GR008';
    END IF;
    IF (o ? 'cron') = (o ? 'every') THEN
        RAISE EXCEPTION 'schedule %: give cron or every, not both', name USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'cron' THEN
        cr := o ->> 'cron';
        -- The shape only (5 fields, or a macro); the worker reads it with cronsim and disables a schedule it cannot read.
        IF jsonb_typeof(o -> 'cron') <> 'string'
           OR (cr !~ '^\s*@(hourly|daily|midnight|weekly|monthly|yearly|annually)\s*$'
               AND cr !~ '^\s*[0-9A-Za-z*/,#?-]+(\s+[0-9A-Za-z*/,#?-]+){4}\s*$') THEN
            RAISE EXCEPTION 'schedule %: cron must be 5 fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly',
                name USING ERRCODE = 'GR008';
        END IF;
    ELSE
        IF jsonb_typeof(o -> 'every') <> 'number' OR (o ->> 'every')::numeric < 1
           OR (o ->> 'every')::numeric > 3153600000 OR (o ->> 'every')::numeric <> trunc((o ->> 'every')::numeric) THEN
            RAISE EXCEPTION 'schedule %: every must be a whole number of seconds from 1 to 3153600000', name
                USING ERRCODE = 'GR008';
        END IF;
        ev := make_interval(secs => (o ->> 'every')::double precision);
    END IF;
    IF jsonb_typeof(coalesce(o -> 'timezone', '"UTC"')) <> 'string'
       OR NOT EXISTS (SELECT 1 FROM pg_timezone_names z WHERE z.name = tz) THEN
        RAISE EXCEPTION 'schedule %: unknown time zone %', name, quote_literal(tz) USING ERRCODE = 'GR008';
    END IF;
    IF policy NOT IN ('skip', 'latest', 'all') THEN
        RAISE EXCEPTION 'schedule %: catch_up must be skip, latest or all', name USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'enabled' AND jsonb_typeof(o -> 'enabled') <> 'boolean' THEN
        RAISE EXCEPTION 'schedule %: enabled must be true or false', name USING ERRCODE = 'GR008';
    END IF;
    IF o ? 'next_at' THEN
        BEGIN
            first_at := (o ->> 'next_at')::timestamptz;
        EXCEPTION WHEN OTHERS THEN
            first_at := NULL;
        END;
        IF jsonb_typeof(o -> 'next_at') <> 'string' OR first_at IS NULL OR NOT isfinite(first_at) THEN
            RAISE EXCEPTION 'schedule %: next_at must be a time (ISO 8601)', name USING ERRCODE = 'GR008';
        END IF;
    END IF;
    SELECT * INTO gt FROM goalrt.goal_types t WHERE t.name = put_schedule.goal_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule %: unknown goal type %', name, coalesce(quote_literal(goal_name), 'NULL')
            USING ERRCODE = 'GR008';
    END IF;
    IF goalrt.json_too_deep(params) THEN
        PERFORM goalrt.json_depth_error('params', params);
    END IF;
    problem := goalrt.params_problem(gt.params_schema, coalesce(params, '{}'));
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'schedule %: invalid params for goal %: %', name, goal_name, problem USING ERRCODE = 'GR008';
    END IF;

    SELECT * INTO old FROM goalrt.schedules s WHERE s.name = put_schedule.name FOR UPDATE;
    IF FOUND AND old.goal_name = put_schedule.goal_name AND old.params = coalesce(put_schedule.params, '{}')
       AND old.cron IS NOT DISTINCT FROM cr AND old.every IS NOT DISTINCT FROM ev AND old.timezone = tz
       AND old.catch_up = policy AND old.enabled = coalesce((o ->> 'enabled')::boolean, true) AND first_at IS NULL
       AND old.gdl_version IS NOT DISTINCT FROM version THEN
        RETURN old;  -- unchanged: keep its next tick
    END IF;
    INSERT INTO goalrt.schedules AS s (name, goal_name, params, cron, every, timezone, catch_up, enabled, next_at,
                                       gdl_version)
    VALUES (put_schedule.name, put_schedule.goal_name, coalesce(put_schedule.params, '{}'), cr, ev, tz, policy,
            coalesce((o ->> 'enabled')::boolean, true), first_at, version)
    ON CONFLICT ON CONSTRAINT schedules_pkey DO UPDATE
       SET goal_name = excluded.goal_name, params = excluded.params, cron = excluded.cron, every = excluded.every,
           timezone = excluded.timezone, catch_up = excluded.catch_up, enabled = excluded.enabled,
           -- The same timing keeps its next tick (a changed goal or params applies from it on).
           next_at = CASE WHEN excluded.next_at IS NOT NULL THEN excluded.next_at
                          WHEN s.cron IS NOT DISTINCT FROM excluded.cron AND s.every IS NOT DISTINCT FROM excluded.every
                               AND s.timezone = excluded.timezone THEN s.next_at END,
           gdl_version = excluded.gdl_version, revision = s.revision + 1, last_error = NULL,
           updated_at = now(), updated_by = session_user
    RETURNING s.* INTO r;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('schedule:' || r.name, 'schedule.set',
            jsonb_strip_nulls(jsonb_build_object(
                'name', r.name, 'goal', r.goal_name, 'params', r.params, 'cron', r.cron,
                'every', extract(epoch FROM r.every), 'timezone', r.timezone, 'catch_up', r.catch_up,
                'enabled', r.enabled, 'next_at', r.next_at, 'gdl_version', r.gdl_version)));
    RETURN r;
END
$$;

-- Set (or replace) a schedule. options: cron (5 fields) or every (seconds),
-- timezone (default UTC), catch_up (skip, latest (default), all), enabled
-- (default true), next_at (the first tick, as given; default: a worker
-- computes the first tick after now). Changing a schedule that GDL
-- installed needs an admin.
CREATE FUNCTION goalrt.set_schedule(name text, goal_name text, params jsonb DEFAULT '{}', options jsonb DEFAULT '{}')
RETURNS SETOF goalrt.schedules
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    installed bigint;
BEGIN
    SELECT s.gdl_version INTO installed FROM goalrt.schedules s WHERE s.name = set_schedule.name;
    IF installed IS NOT NULL AND NOT goalrt.caller_is_admin() THEN
        RAISE EXCEPTION 'schedule % was installed by GDL version %: change it in the workspace and load it (goalrt gdl load)',
            name, installed USING ERRCODE = '42501';
    END IF;
    RETURN QUERY SELECT * FROM goalrt.put_schedule(name, goal_name, params, options, NULL);
END
$$;

COMMENT ON FUNCTION goalrt.set_schedule(text, text, jsonb, jsonb) IS
    'Set a schedule: {"cron" | "every", "timezone", "catch_up", "enabled", "next_at"}; each tick submits the goal once.';

-- Drop a schedule; return whether there was one. The goals it submitted stay.
CREATE FUNCTION goalrt.drop_schedule(name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    installed bigint;
BEGIN
    SELECT s.gdl_version INTO installed FROM goalrt.schedules s WHERE s.name = drop_schedule.name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF installed IS NOT NULL AND NOT goalrt.caller_is_admin() THEN
        RAISE EXCEPTION 'schedule % was installed by GDL version %: remove it from the workspace and load it (goalrt gdl load)',
            name, installed USING ERRCODE = '42501';
    END IF;
    DELETE FROM goalrt.schedules s WHERE s.name = drop_schedule.name;
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('schedule:' || name, 'schedule.dropped', jsonb_build_object('name', name));
    RETURN true;
END
$$;

-- Install the schedules of a GDL version (load_gdl): replace those an
-- earlier version installed, keeping the next tick of each whose timing is
-- unchanged. items: [{"name", "goal_name", "params", "options"}]
CREATE FUNCTION goalrt.install_schedules(version bigint, items jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    x jsonb;
    n text;
BEGIN
    FOR n IN
        SELECT s.name FROM goalrt.schedules s
         WHERE s.gdl_version IS NOT NULL
           AND s.name NOT IN (SELECT i ->> 'name' FROM jsonb_array_elements(coalesce(items, '[]')) AS t(i))
         ORDER BY s.name
    LOOP
        DELETE FROM goalrt.schedules s WHERE s.name = n;
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('schedule:' || n, 'schedule.dropped', jsonb_build_object('name', n, 'gdl_version', version));
    END LOOP;
    FOR x IN SELECT i FROM jsonb_array_elements(coalesce(items, '[]')) AS t(i) ORDER BY i ->> 'name' LOOP
        PERFORM goalrt.put_schedule(x ->> 'name', x ->> 'goal_name', x -> 'params', x -> 'options', version);
    END LOOP;
END
$$;

-- Fire due schedules (workers call it each poll that found some due). Each
-- item is one schedule's pass, computed by the worker from the row it read:
--   {"name", "revision", "due" (its next_at as read, or null),
--    "ticks": [times to submit], "next_at": the tick after them,
--    "skipped": ticks the catch_up policy skipped}
-- or {"name", "revision", "due", "error": why the worker cannot compute it}
-- (the schedule is then disabled with that error). A schedule another
-- transaction holds, or that changed since it was read, is left alone
-- ('moved'). Answers each item: fired (the goals submitted, in tick
-- order; an existing goal of the same tick counts as submitted), moved, or
-- disabled.
CREATE FUNCTION goalrt.fire_schedules_v1(items jsonb)
RETURNS TABLE (name text, outcome text, goal_ids bigint[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    x       jsonb;
    s       goalrt.schedules;
    due     timestamptz;
    ticks   timestamptz[];
    nxt     timestamptz;
    tick    timestamptz;
    ids     bigint[];
    created boolean := false;
    r       record;
    err     text;
BEGIN
    IF jsonb_typeof(items) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = 'GR008';
    END IF;
    FOR x IN SELECT i FROM jsonb_array_elements(items) AS t(i) ORDER BY i ->> 'name' LOOP
        due := (x ->> 'due')::timestamptz;
        SELECT * INTO s FROM goalrt.schedules sc
         WHERE sc.name = x ->> 'name' AND sc.revision = (x ->> 'revision')::bigint AND sc.enabled
           AND sc.next_at IS NOT DISTINCT FROM due
           FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            RETURN QUERY SELECT x ->> 'name', 'moved', NULL::bigint[];
            CONTINUE;
        END IF;
        IF x ? 'error' THEN
            UPDATE goalrt.schedules sc SET enabled = false, last_error = x ->> 'error' WHERE sc.name = s.name;
            RETURN QUERY SELECT s.name, 'disabled', NULL::bigint[];
            CONTINUE;
        END IF;
        ticks := ARRAY(SELECT e::timestamptz FROM jsonb_array_elements_text(x -> 'ticks') WITH ORDINALITY AS t(e, i)
                        ORDER BY i);
        nxt := (x ->> 'next_at')::timestamptz;
        -- A worker's pass submits only ticks that are due, in order, from the row's next tick on.
        IF nxt IS NULL OR EXISTS (SELECT 1 FROM unnest(ticks) WITH ORDINALITY AS t(k, i)
                                   WHERE k > now() OR k < due OR k >= nxt
                                      OR k <= (ticks)[i - 1]) THEN
            RAISE EXCEPTION 'schedule %: the ticks of a pass must be due, ascending, from next_at % and before the next %',
                s.name, due, nxt USING ERRCODE = 'GR008';
        END IF;
        ids := '{}';
        err := NULL;
        FOREACH tick IN ARRAY ticks LOOP
            BEGIN
                SELECT * INTO r FROM goalrt.submit_one(
                    s.goal_name, s.params,
                    jsonb_build_object('key', 'schedule:' || s.name || ':'
                                              || to_char(tick AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                    '');
                ids := ids || r.id;
                created := created OR r.created;
            EXCEPTION WHEN SQLSTATE 'GR008' OR SQLSTATE 'GR010' THEN
                err := format('tick %s: %s', to_char(tick AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), SQLERRM);
            END;
        END LOOP;
        UPDATE goalrt.schedules sc
           SET next_at = nxt,
               last_tick = coalesce(ticks[cardinality(ticks)], sc.last_tick),
               last_goal_id = coalesce(ids[cardinality(ids)], sc.last_goal_id),
               fired = sc.fired + cardinality(ids),
               skipped = sc.skipped + coalesce((x ->> 'skipped')::bigint, 0),
               last_error = CASE WHEN cardinality(ticks) > 0 THEN err ELSE sc.last_error END
         WHERE sc.name = s.name;
        RETURN QUERY SELECT s.name, 'fired', ids;
    END LOOP;
    IF created THEN
        PERFORM pg_notify('goalrt_goals', '');
    END IF;
END
$$;

COMMENT ON FUNCTION goalrt.fire_schedules_v1(jsonb) IS
    'Workers: submit the due ticks of schedules (key schedule:<name>:<tick>) and advance next_at, once per tick.';
