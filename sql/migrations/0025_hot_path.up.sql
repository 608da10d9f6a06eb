-- Hot path (issue 17): holds_lease inlined (no SET clause), lock_goals without the tree walk when no
-- goal has an unfinished child, params_problem skipping json_problem for a schema that takes any
-- object, and the lifecycle trigger called only when a goal's status changes (WHEN clauses).

CREATE OR REPLACE FUNCTION goalrt.holds_lease(g goalrt.goals, worker_id text, epoch bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(g.status = 'active' AND g.lease_owner = worker_id AND g.lease_epoch = epoch
                    AND g.lease_expires_at > now() AND g.lease_role = session_user, false)
$$;

CREATE OR REPLACE FUNCTION goalrt.lock_goals(ids bigint[]) RETURNS bigint[]
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

CREATE OR REPLACE FUNCTION goalrt.params_problem(params_schema jsonb, params jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT CASE WHEN jsonb_typeof(params) = 'object' AND jsonb_typeof(params_schema) = 'object'
                     AND NOT params_schema ?| ARRAY['required', 'properties', 'additionalProperties']
                THEN NULL
                ELSE replace(goalrt.json_problem(params_schema, params, 'params'), 'is not a field',
                             'is not a parameter')
           END
$$;

DROP TRIGGER goals_lifecycle ON goalrt.goals;
CREATE TRIGGER goals_lifecycle
    BEFORE UPDATE OF status ON goalrt.goals
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status) EXECUTE FUNCTION goalrt.check_goal_transition();
CREATE TRIGGER goals_lifecycle_insert
    BEFORE INSERT ON goalrt.goals
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM 'pending') EXECUTE FUNCTION goalrt.check_goal_transition();
