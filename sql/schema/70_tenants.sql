-------------------------------------------------------------------------------
-- Tenants: row-level security (see the top of 10_log.sql and
-- docs/security.md, "Tenants")
--
-- One policy per table that holds a tenant's rows: a session sees and
-- writes the rows of its tenant (goalrt.current_tenant()), or of every
-- tenant when its role is mapped to '*'. The function is called as a
-- scalar subquery, an InitPlan evaluated once per statement.
--
-- FORCE on the tables goalrt's functions work on for one caller (goals,
-- their steps and waits, the rechecks, the state): the functions run as
-- the owner, and FORCE holds the owner to the policy too, so every
-- function sees only the caller's tenant without a filter of its own.
-- Not FORCE on the log (event_data, event_order) and snapshot_entries: the
-- tick positions every tenant's events in one order and snapshots cover
-- every tenant, both as the owner. The policy holds every other role that
-- reads them (psql, the security_invoker views goalrt.events and
-- goalrt.state); goalrt's functions that read them for a caller
-- (read_events, state_fold, state_history, wait_look_back) filter by the
-- caller's tenant themselves.
-------------------------------------------------------------------------------

-- A role reads only its own mapping (current_tenant needs it); the owner all.
CREATE POLICY own_role ON goalrt.tenant_roles FOR SELECT
    USING (role OPERATOR(pg_catalog.=) session_user::pg_catalog.text);

-- Row-level security is switched on by ALTER TABLE only (CREATE TABLE has
-- no such option); this file is where these tables' security is defined.
DO $$
DECLARE
    t text;
BEGIN
    EXECUTE 'ALTER TABLE goalrt.tenant_roles ENABLE ROW LEVEL SECURITY';
    FOREACH t IN ARRAY ARRAY['goals', 'goal_steps', 'goal_waits', 'wait_rechecks', 'state_data',
                             'event_data', 'event_order', 'snapshot_entries'] LOOP
        EXECUTE format('ALTER TABLE goalrt.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_rows ON goalrt.%I USING ((SELECT goalrt.current_tenant()) IN (tenant, ''*''))', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['goals', 'goal_steps', 'goal_waits', 'wait_rechecks', 'state_data'] LOOP
        EXECUTE format('ALTER TABLE goalrt.%I FORCE ROW LEVEL SECURITY', t);
    END LOOP;
END
$$;

-- A session serving every tenant writes many goals' rows in one statement
-- (a claim's goal.started events, a plan's steps): each takes its goal's
-- tenant. WHEN: no other session runs the trigger.
CREATE TRIGGER event_data_tenant BEFORE INSERT ON goalrt.event_data
    FOR EACH ROW WHEN (NEW.tenant = '*') EXECUTE FUNCTION goalrt.goal_row_tenant();
CREATE TRIGGER goals_tenant BEFORE INSERT ON goalrt.goals
    FOR EACH ROW WHEN (NEW.tenant = '*') EXECUTE FUNCTION goalrt.goal_row_tenant();
CREATE TRIGGER goal_steps_tenant BEFORE INSERT ON goalrt.goal_steps
    FOR EACH ROW WHEN (NEW.tenant = '*') EXECUTE FUNCTION goalrt.goal_row_tenant();
CREATE TRIGGER goal_waits_tenant BEFORE INSERT ON goalrt.goal_waits
    FOR EACH ROW WHEN (NEW.tenant = '*') EXECUTE FUNCTION goalrt.goal_row_tenant();
CREATE TRIGGER wait_rechecks_tenant BEFORE INSERT ON goalrt.wait_rechecks
    FOR EACH ROW WHEN (NEW.tenant = '*') EXECUTE FUNCTION goalrt.goal_row_tenant();

DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    GRANT SELECT ON goalrt.tenant_roles TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
    GRANT EXECUTE ON FUNCTION goalrt.current_tenant()
        TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
END
$$;
