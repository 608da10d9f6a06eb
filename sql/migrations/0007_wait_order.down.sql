-- Back to 0005: waits compare event ids with their since point again, and
-- starting one waits for the appends of its event type in flight.

DROP TRIGGER event_order_late_events ON goalrt.event_order;
DROP FUNCTION goalrt.note_late_events();
DROP FUNCTION goalrt.recheck_waits(integer);

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
    ev       record;
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
        IF s.kind = 'sleep' THEN
            due := coalesce((s.args ->> 'until')::timestamptz,
                            now() + make_interval(secs => (s.args ->> 'seconds')::float8));
            IF due <= now() THEN
                res := jsonb_build_object('slept_until', due);
            END IF;
        ELSIF s.kind = 'event' THEN
            -- Appenders of this event type hold this lock (shared) while they
            -- match waits; taking it exclusively waits for those in flight to
            -- commit, so an event is either seen here or sees this wait.
            PERFORM pg_advisory_xact_lock('goalrt.goal_waits'::regclass::oid::integer,
                                          goalrt.wait_lock_key(s.args ->> 'event'));
            since := 0;
            alts := CASE WHEN jsonb_typeof(s.args -> 'where') = 'array' THEN s.args -> 'where'
                         ELSE jsonb_build_array(coalesce(s.args -> 'where', '{}')) END;
            IF coalesce(s.args ->> 'since', 'submit') = 'submit' THEN
                SELECT min(e.id) INTO since FROM goalrt.event_data e
                 WHERE e.stream = 'goal:' || g.id AND e.type = 'goal.submitted';
                SELECT e.id, e.stream, e.type, e.data INTO ev FROM goalrt.event_data e
                 WHERE e.type = s.args ->> 'event' AND e.id > coalesce(since, 0)
                   AND EXISTS (SELECT 1 FROM jsonb_array_elements(alts) f WHERE f = '{}' OR e.data @> f)
                 ORDER BY e.id LIMIT 1;
                IF FOUND THEN
                    res := jsonb_build_object('event', jsonb_build_object(
                               'id', ev.id, 'stream', ev.stream, 'type', ev.type, 'data', ev.data));
                END IF;
            END IF;
            IF res IS NULL THEN
                DELETE FROM goalrt.goal_waits w WHERE w.goal_id = g.id;
                INSERT INTO goalrt.goal_waits (goal_id, alt, seq, event_type, filter, since_id, match_key)
                SELECT g.id, f.n::integer - 1, s.seq, s.args ->> 'event', f.v, coalesce(since, 0),
                       (goalrt.match_keys(f.v))[1]
                  FROM jsonb_array_elements(alts) WITH ORDINALITY AS f(v, n);
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
        INSERT INTO goalrt.event_data (stream, type, data)
        VALUES ('goal:' || g.id, 'goal.waiting',
                jsonb_strip_nulls(jsonb_build_object(
                    'goal_id', g.id, 'seq', s.seq, 'kind', s.kind, 'for', s.args, 'until', due,
                    'children', CASE WHEN s.kind = 'children' THEN kids END)));
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
        SELECT DISTINCT ON (w.goal_id) w.goal_id, n.id, n.stream, n.type, n.data
          FROM goalrt.event_data n
          CROSS JOIN LATERAL (
              SELECT w0.goal_id, w0.since_id, w0.filter FROM goalrt.goal_waits w0
               WHERE w0.event_type = n.type AND w0.match_key IS NULL
              UNION ALL
              SELECT w1.goal_id, w1.since_id, w1.filter FROM goalrt.goal_waits w1
               WHERE w1.event_type = n.type AND w1.match_key = ANY (goalrt.match_keys(n.data))
          ) w
         WHERE n.id = ANY (ids) AND n.id > w.since_id AND (w.filter = '{}' OR n.data @> w.filter)
         ORDER BY w.goal_id, n.id
    LOOP
        PERFORM goalrt.finish_wait(
            m.goal_id,
            jsonb_build_object('event', jsonb_build_object('id', m.id, 'stream', m.stream, 'type', m.type,
                                                           'data', m.data)),
            false, NULL);
    END LOOP;
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
    n := n + woken;
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

DROP FUNCTION goalrt.wait_look_back(text, jsonb, bigint);
DROP TABLE goalrt.late_events;
DROP TABLE goalrt.wait_rechecks;
