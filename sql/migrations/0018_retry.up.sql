-- goalrt.retry_goal (goalrt retry): a failed or cancelled goal runs again
-- from a step, as a new plan; the lifecycle trigger lets a goal leave
-- failed or cancelled only inside retry_goal. Applications may call it.

CREATE OR REPLACE FUNCTION goalrt.check_goal_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    allowed text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'invalid goal transition: a new goal starts pending, not %', NEW.status
                USING ERRCODE = 'GR007';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    allowed := CASE OLD.status
                 WHEN 'pending' THEN ARRAY['active', 'failed', 'cancelled']
                 WHEN 'active'  THEN ARRAY['waiting', 'complete', 'failed', 'cancelled']
                 WHEN 'waiting' THEN ARRAY['active', 'failed', 'cancelled']
                 -- A failed or cancelled goal goes back to pending only through
                 -- goalrt.retry_goal, which marks its transaction for that goal.
                 WHEN 'failed' THEN CASE WHEN current_setting('goalrt.retrying', true) = OLD.id::text
                                         THEN ARRAY['pending'] ELSE '{}'::text[] END
                 WHEN 'cancelled' THEN CASE WHEN current_setting('goalrt.retrying', true) = OLD.id::text
                                            THEN ARRAY['pending'] ELSE '{}'::text[] END
                 ELSE '{}'::text[]
               END;
    IF NOT NEW.status = ANY (allowed) THEN
        RAISE EXCEPTION 'invalid goal transition for goal %: % -> % (%)', OLD.id, OLD.status, NEW.status,
            CASE WHEN cardinality(allowed) = 0 THEN OLD.status || ' is final'
                 ELSE 'from ' || OLD.status || ' only to ' || array_to_string(allowed, ', ') END
            USING ERRCODE = 'GR007';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.retry_goal(goal_id bigint, from_step integer DEFAULT NULL, reason text DEFAULT NULL)
RETURNS TABLE (id bigint, status text, first_step integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp SET enable_seqscan = off SET jit = off AS $$
DECLARE
    g      goalrt.goals;
    origin goalrt.goal_steps;
    first  integer;
    copied integer;
BEGIN
    PERFORM goalrt.lock_goals(ARRAY[retry_goal.goal_id]);
    SELECT * INTO g FROM goalrt.goals WHERE goals.id = retry_goal.goal_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'goal % does not exist', coalesce(goal_id::text, 'NULL') USING ERRCODE = 'GR009';
    END IF;
    IF g.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'cannot retry goal %: it is %, and only a failed or cancelled goal runs again', g.id, g.status
            USING ERRCODE = 'GR007';
    END IF;
    IF g.parent_id IS NOT NULL THEN
        RAISE EXCEPTION 'cannot retry goal %: it is a child of goal %, which has gone on without it; retry goal % from its step %',
            g.id, g.parent_id, g.parent_id, coalesce(g.parent_step::text, '?') USING ERRCODE = 'GR007';
    END IF;
    IF reason IS NOT NULL AND length(reason) > 1000 THEN
        RAISE EXCEPTION 'reason must be at most 1000 characters' USING ERRCODE = 'GR008';
    END IF;
    IF from_step IS NOT NULL THEN
        SELECT * INTO origin FROM goalrt.goal_steps s WHERE s.goal_id = g.id AND s.seq = from_step;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'goal % has no step %: its steps are %', g.id, from_step,
                coalesce((SELECT min(s.seq) || '..' || max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id),
                         'none (it was never planned)') USING ERRCODE = 'GR008';
        END IF;
    ELSIF g.plan_no > 0 THEN
        SELECT * INTO origin FROM goalrt.goal_steps s
         WHERE s.goal_id = g.id AND s.plan_no = g.plan_no AND s.status <> 'complete'
         ORDER BY s.seq LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'cannot retry goal %: every step of its plan completed; give the step to run again from',
                g.id USING ERRCODE = 'GR008';
        END IF;
    END IF;
    PERFORM set_config('goalrt.retrying', g.id::text, true);
    IF origin.seq IS NOT NULL THEN
        first := (SELECT max(s.seq) FROM goalrt.goal_steps s WHERE s.goal_id = g.id) + 1;
        INSERT INTO goalrt.goal_steps (goal_id, seq, plan_no, kind, action, args, label, max_attempts)
        SELECT g.id, first + (s.seq - origin.seq), g.plan_no + 1, s.kind, s.action, s.args, s.label, s.max_attempts
          FROM goalrt.goal_steps s
         WHERE s.goal_id = g.id AND s.plan_no = origin.plan_no AND s.seq >= origin.seq
         ORDER BY s.seq;
        GET DIAGNOSTICS copied = ROW_COUNT;
    END IF;
    UPDATE goalrt.goals
       SET status = 'pending', result = NULL, last_error = NULL, finished_at = NULL, run_at = now(), wake_at = NULL,
           blocked_on = NULL, step_seq = first, plan_no = g.plan_no + CASE WHEN first IS NULL THEN 0 ELSE 1 END,
           -- A deadline that has passed would fail it again at once.
           deadline_at = CASE WHEN g.deadline_at > now() THEN g.deadline_at END,
           updated_at = now()
     WHERE goals.id = g.id;
    PERFORM set_config('goalrt.retrying', '', true);
    INSERT INTO goalrt.event_data (stream, type, data)
    VALUES ('goal:' || g.id, 'goal.retried',
            jsonb_strip_nulls(jsonb_build_object(
                'goal_id', g.id, 'from', g.status, 'error', g.last_error, 'reason', reason,
                'from_step', origin.seq, 'first_seq', first, 'steps', copied,
                'plan_no', CASE WHEN first IS NOT NULL THEN g.plan_no + 1 END)));
    PERFORM pg_notify('goalrt_goals', '');
    RETURN QUERY SELECT g.id, 'pending'::text, first;
END
$$;

COMMENT ON FUNCTION goalrt.retry_goal(bigint, integer, text) IS
    'Run a failed or cancelled goal again from a step (default: its first step that did not complete).';
REVOKE ALL ON FUNCTION goalrt.retry_goal(bigint, integer, text) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles WHERE rolname IN ('goalrt_writer', 'goalrt_admin', 'goalrt_app')) = 3 THEN
        GRANT EXECUTE ON FUNCTION goalrt.retry_goal(bigint, integer, text) TO goalrt_writer, goalrt_admin, goalrt_app;
    END IF;
END
$$;
