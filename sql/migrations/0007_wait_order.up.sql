-- Event waits count every matching event after their since point in the
-- log (pos), whatever moment its transaction began; starting a wait never
-- waits for an appending transaction (issue 15, items 2 and 3).

CREATE TABLE goalrt.wait_rechecks (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    goal_id bigint      NOT NULL,
    due_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wait_rechecks_due_idx ON goalrt.wait_rechecks (due_at);

COMMENT ON TABLE goalrt.wait_rechecks IS 'Event waits to look back for again: their start could not see every event.';

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

-- The events already positioned out of id order.
INSERT INTO goalrt.late_events (pos, event_id, type)
SELECT l.pos, l.event_id, e.type
  FROM (SELECT o.pos, o.event_id,
               max(o.event_id) OVER (ORDER BY o.pos ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_max
          FROM goalrt.event_order o) l
  JOIN goalrt.event_data e ON e.id = l.event_id
 WHERE l.event_id < l.before_max AND e.type !~ '^(goal|step)\.';

CREATE FUNCTION goalrt.wait_look_back(p_type text, alts jsonb, p_since bigint, OUT hit jsonb, OUT settled boolean)
LANGUAGE plpgsql AS $$
DECLARE
    snap      pg_snapshot;
    since_pos bigint;
    ev        record;
BEGIN
    settled := pg_try_advisory_xact_lock('goalrt.goal_waits'::regclass::oid::integer, goalrt.wait_lock_key(p_type));
    -- Appended after the since point.
    SELECT e.id, e.stream, e.type, e.data INTO ev FROM goalrt.event_data e
     WHERE e.type = p_type AND e.id > p_since
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
         WHERE l.type = p_type AND l.pos > since_pos AND l.event_id < p_since
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
               AND e.xid <> pg_current_xact_id()
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
             ORDER BY e.id LIMIT 1;
        END IF;
    END IF;
    IF ev.id IS NOT NULL THEN
        hit := jsonb_build_object('id', ev.id, 'stream', ev.stream, 'type', ev.type, 'data', ev.data);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.advance_goal(
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
        SELECT DISTINCT ON (q.goal_id) q.* FROM (
            SELECT w.goal_id, n.id, n.stream, n.type, n.data,
                   n.id > w.since_id
                   OR EXISTS (SELECT 1 FROM goalrt.event_order o WHERE o.event_id = w.since_id) AS counts
              FROM goalrt.event_data n
              CROSS JOIN LATERAL (
                  SELECT w0.goal_id, w0.since_id, w0.filter FROM goalrt.goal_waits w0
                   WHERE w0.event_type = n.type AND w0.match_key IS NULL
                  UNION ALL
                  SELECT w1.goal_id, w1.since_id, w1.filter FROM goalrt.goal_waits w1
                   WHERE w1.event_type = n.type AND w1.match_key = ANY (goalrt.match_keys(n.data))
              ) w
             WHERE n.id = ANY (ids) AND (w.filter = '{}' OR n.data @> w.filter)) q
         ORDER BY q.goal_id, NOT q.counts, q.id
    LOOP
        IF m.counts THEN
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

CREATE FUNCTION goalrt.recheck_waits(max_count integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r     record;
    g     goalrt.goals;
    s     goalrt.goal_steps;
    since bigint;
    lb    record;
    alts  jsonb;
    n     integer := 0;
BEGIN
    FOR r IN SELECT q.id, q.goal_id FROM goalrt.wait_rechecks q
              WHERE q.due_at <= now() ORDER BY q.due_at LIMIT max_count FOR UPDATE SKIP LOCKED
    LOOP
        DELETE FROM goalrt.wait_rechecks q WHERE q.id = r.id;
        SELECT * INTO g FROM goalrt.goals WHERE goals.id = r.goal_id FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            IF EXISTS (SELECT 1 FROM goalrt.goals WHERE goals.id = r.goal_id) THEN
                INSERT INTO goalrt.wait_rechecks (goal_id, due_at) VALUES (r.goal_id, now() + interval '1 second');
            END IF;
            CONTINUE;
        END IF;
        SELECT min(w.since_id) INTO since FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
        IF g.status <> 'waiting' OR since IS NULL THEN
            CONTINUE;
        END IF;
        SELECT * INTO s FROM goalrt.goal_steps st WHERE st.goal_id = g.id AND st.seq = g.step_seq;
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

CREATE OR REPLACE FUNCTION goalrt.wake_due_v1(max_count integer DEFAULT 100) RETURNS integer
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
    n := n + woken + goalrt.recheck_waits(max_count);
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

REVOKE ALL ON FUNCTION goalrt.note_late_events(), goalrt.wait_look_back(text, jsonb, bigint),
    goalrt.recheck_waits(integer) FROM PUBLIC;
REVOKE ALL ON goalrt.wait_rechecks, goalrt.late_events FROM PUBLIC;
