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
--
-- All of it only while tenancy is on (sync_tenant_security, below): a
-- database with one tenant evaluates no policy.
-------------------------------------------------------------------------------

-- A role reads only its own mapping (current_tenant needs it); the owner all.
CREATE POLICY own_role ON goalrt.tenant_roles FOR SELECT
    USING (role OPERATOR(pg_catalog.=) session_user::pg_catalog.text);

-- Row-level security is switched on by ALTER TABLE only (CREATE TABLE has
-- no such option), by sync_tenant_security below; this file is where these
-- tables' security is defined.
DO $$
DECLARE
    t text;
BEGIN
    EXECUTE 'ALTER TABLE goalrt.tenant_roles ENABLE ROW LEVEL SECURITY';
    FOREACH t IN ARRAY ARRAY['goals', 'goal_steps', 'goal_waits', 'wait_rechecks', 'state_data',
                             'event_data', 'event_order', 'snapshot_entries'] LOOP
        EXECUTE format('CREATE POLICY tenant_rows ON goalrt.%I USING ((SELECT goalrt.current_tenant()) IN (tenant, ''*''))', t);
    END LOOP;
END
$$;

-- Tenancy on or off, as the mappings need it; set_tenant_role and
-- drop_tenant_role call it (under their lock on tenant_roles), for the
-- owner only. A database with one tenant (the state the schema files build)
-- keeps the tenant tables' row-level security off, so no statement
-- evaluates a policy, and their tenant columns default to '', so no insert
-- calls current_tenant(); the policies above wait, unused. Tenancy is on
-- while a role is mapped to a tenant other than '': the tables ENABLE (and
-- the ones goalrt's functions work on for one caller FORCE) row-level
-- security and the tenant columns default to the session's tenant. It stays
-- on after the last such mapping goes while rows of another tenant remain
-- (off, every role would see them). The triggers that give an all-tenant
-- session's rows their goal's tenant exist only while a role is mapped to
-- '*'. Each change is an ALTER TABLE or a CREATE/DROP TRIGGER that commits
-- with the mapping; it locks the tables for a moment, and only when the
-- state changes.
CREATE FUNCTION goalrt.sync_tenant_security() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    -- Held to the policy even as the owner: the tables goalrt's functions work on for one caller.
    forced  CONSTANT text[] := ARRAY['goals', 'goal_steps', 'goal_waits', 'wait_rechecks', 'state_data'];
    -- Not forced: the tick and snapshots work on every tenant's rows as the owner.
    shared  CONSTANT text[] := ARRAY['event_data', 'event_order', 'snapshot_entries'];
    -- Tenant columns that default to the session's tenant while tenancy is on.
    written CONSTANT text[] := ARRAY['goals', 'goal_steps', 'goal_waits', 'wait_rechecks', 'state_data', 'event_data'];
    is_on   boolean := (SELECT c.relrowsecurity FROM pg_class c WHERE c.oid = 'goalrt.goals'::regclass);
    want    boolean := EXISTS (SELECT 1 FROM goalrt.tenant_roles r WHERE r.tenant <> '');
    star    boolean := EXISTS (SELECT 1 FROM goalrt.tenant_roles r WHERE r.tenant = '*');
    has_trg boolean := EXISTS (SELECT 1 FROM pg_trigger g
                                WHERE g.tgrelid = 'goalrt.goals'::regclass AND g.tgname = 'goals_tenant');
    t       text;
    found_rows boolean;
BEGIN
    IF is_on AND NOT want THEN
        -- The owner sees every tenant's rows in the tables that do not force
        -- the policy; in the others once they stop (forced again if rows remain).
        want := EXISTS (SELECT 1 FROM goalrt.event_data e WHERE e.tenant <> '')
             OR EXISTS (SELECT 1 FROM goalrt.event_order o WHERE o.tenant <> '')
             OR EXISTS (SELECT 1 FROM goalrt.snapshot_entries s WHERE s.tenant <> '');
        IF NOT want THEN
            FOREACH t IN ARRAY forced LOOP
                EXECUTE format('ALTER TABLE goalrt.%I NO FORCE ROW LEVEL SECURITY', t);
            END LOOP;
            FOREACH t IN ARRAY forced LOOP
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM goalrt.%I x WHERE x.tenant <> %L)', t, '') INTO found_rows;
                want := want OR found_rows;
            END LOOP;
            IF want THEN
                FOREACH t IN ARRAY forced LOOP
                    EXECUTE format('ALTER TABLE goalrt.%I FORCE ROW LEVEL SECURITY', t);
                END LOOP;
            END IF;
        END IF;
        IF want THEN
            RAISE NOTICE 'tenancy stays on: rows of tenants other than the default remain';
        END IF;
    END IF;
    IF want AND NOT is_on THEN
        FOREACH t IN ARRAY forced || shared LOOP
            EXECUTE format('ALTER TABLE goalrt.%I ENABLE ROW LEVEL SECURITY', t);
        END LOOP;
        FOREACH t IN ARRAY forced LOOP
            EXECUTE format('ALTER TABLE goalrt.%I FORCE ROW LEVEL SECURITY', t);
        END LOOP;
        FOREACH t IN ARRAY written LOOP
            EXECUTE format('ALTER TABLE goalrt.%I ALTER COLUMN tenant SET DEFAULT goalrt.current_tenant()', t);
        END LOOP;
    ELSIF is_on AND NOT want THEN
        FOREACH t IN ARRAY forced || shared LOOP
            EXECUTE format('ALTER TABLE goalrt.%I DISABLE ROW LEVEL SECURITY', t);
        END LOOP;
        FOREACH t IN ARRAY written LOOP
            EXECUTE format('ALTER TABLE goalrt.%I ALTER COLUMN tenant SET DEFAULT %L', t, '');
        END LOOP;
    END IF;
    -- A session that serves every tenant writes many goals' rows in one
    -- statement (a claim's goal.started events, a plan's steps): each takes
    -- its goal's tenant (goal_row_tenant). WHEN: no other session runs it.
    IF star AND NOT has_trg THEN
        FOREACH t IN ARRAY written LOOP
            CONTINUE WHEN t = 'state_data';
            EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON goalrt.%I FOR EACH ROW WHEN (NEW.tenant = %L) '
                           'EXECUTE FUNCTION goalrt.goal_row_tenant()', t || '_tenant', t, '*');
        END LOOP;
    ELSIF has_trg AND NOT star THEN
        FOREACH t IN ARRAY written LOOP
            CONTINUE WHEN t = 'state_data';
            EXECUTE format('DROP TRIGGER %I ON goalrt.%I', t || '_tenant', t);
        END LOOP;
    END IF;
END
$$;

REVOKE ALL ON FUNCTION goalrt.sync_tenant_security() FROM PUBLIC;

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
