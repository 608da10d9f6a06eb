-- Undo 0025_hot_path.

CREATE OR REPLACE FUNCTION goalrt.holds_lease(g goalrt.goals, worker_id text, epoch bigint) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT coalesce(g.status = 'active' AND g.lease_owner = worker_id AND g.lease_epoch = epoch
                    AND g.lease_expires_at > now() AND g.lease_role = session_user, false)
$$;

CREATE OR REPLACE FUNCTION goalrt.lock_goals(ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    locked bigint[];
BEGIN
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
    SELECT replace(goalrt.json_problem(params_schema, params, 'params'), 'is not a field', 'is not a parameter')
$$;

DROP TRIGGER goals_lifecycle_insert ON goalrt.goals;
DROP TRIGGER goals_lifecycle ON goalrt.goals;
CREATE TRIGGER goals_lifecycle
    BEFORE INSERT OR UPDATE OF status ON goalrt.goals
    FOR EACH ROW EXECUTE FUNCTION goalrt.check_goal_transition();
