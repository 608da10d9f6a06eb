-------------------------------------------------------------------------------
-- Roles and privileges
--
-- Group roles by job (NOLOGIN; grant them to your login roles). Each is
-- granted everything its job needs itself: no group role is a member of
-- another. docs/sql.md has the whole table (tools/grants_table.py makes it
-- from the catalog) and docs/security.md what each role can and cannot do.
--   goalrt_reader  reads the log, the state, the goals, the workers, the
--                  limits, the schedules and the GDL versions; verifies the
--                  chain
--   goalrt_app     an application: reader + appends events, changes state,
--                  submits, cancels and resumes goals, sets and drops
--                  schedules. No worker function.
--   goalrt_worker  a worker process: reader + registers itself and the goal
--                  types of its handlers, claims, plans, completes, fails,
--                  heartbeats and releases goals, wakes due timers, fires
--                  due schedules. It acts only under leases its own login
--                  role took (holds_lease).
--   goalrt_writer  goalrt_app and goalrt_worker together (one role for
--                  both jobs, as before the roles were split)
--   goalrt_admin   everything above + loads GDL, sets and drops limits,
--                  changes goal types and schedules GDL installed, takes
--                  named snapshots, edits settings and the fork registry
-- Roles are cluster-wide, so they are created only when missing and are not
-- dropped by a downgrade (another database may use them).
--
-- No role but the owner may create objects in the schema: the SECURITY
-- DEFINER functions run as the owner and look names up in it
-- (search_path = pg_catalog, goalrt, pg_temp), so a function someone else
-- put there, say goalrt.format(text, bigint), would be called instead of
-- pg_catalog's and run as the owner. foreign_objects() names what others
-- did put there.
-------------------------------------------------------------------------------

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'goalrt: this role may not create roles; create goalrt_reader, goalrt_app, goalrt_worker, goalrt_writer and goalrt_admin yourself';
END
$$;

-- What roles other than the owners put in goalrt's schemas (this one and the
-- forks'), and who else may create objects there: a schema owned by a role
-- that is not (a member of) this schema's owner, a CREATE privilege, or an
-- object whose owner is not (a member of) its schema's owner (an extension
-- stands for its members; parts of an object, such as a table's row type,
-- go with it). Empty on a sound database. Superusers count as members of
-- every role.
CREATE FUNCTION goalrt.foreign_objects()
RETURNS TABLE (schema_name text, kind text, object text, role text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH home AS (
        SELECT c.relnamespace AS oid FROM pg_class c WHERE c.oid = 'goalrt.forks'::regclass
    ), s AS (
        SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n
         WHERE n.oid = (SELECT oid FROM home) OR n.nspname IN (SELECT f.schema_name FROM goalrt.forks f)
    ), objects (nsp, kind, object, owner, classid, objid) AS (
        SELECT relnamespace, 'relation', oid::regclass::text, relowner, 'pg_class'::regclass::oid, oid
          FROM pg_class WHERE relkind NOT IN ('i', 'I', 't')
        UNION ALL
        SELECT pronamespace, CASE prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
               oid::regprocedure::text, proowner, 'pg_proc'::regclass::oid, oid FROM pg_proc
        UNION ALL
        SELECT oprnamespace, 'operator', oid::regoperator::text, oprowner, 'pg_operator'::regclass::oid, oid
          FROM pg_operator
        UNION ALL
        SELECT typnamespace, 'type', oid::regtype::text, typowner, 'pg_type'::regclass::oid, oid FROM pg_type
        UNION ALL
        SELECT collnamespace, 'collation', oid::regcollation::text, collowner, 'pg_collation'::regclass::oid, oid
          FROM pg_collation
        UNION ALL
        SELECT connamespace, 'conversion', quote_ident(conname), conowner, 'pg_conversion'::regclass::oid, oid
          FROM pg_conversion
        UNION ALL
        SELECT cfgnamespace, 'text search configuration', oid::regconfig::text, cfgowner,
               'pg_ts_config'::regclass::oid, oid FROM pg_ts_config
        UNION ALL
        SELECT dictnamespace, 'text search dictionary', oid::regdictionary::text, dictowner,
               'pg_ts_dict'::regclass::oid, oid FROM pg_ts_dict
        UNION ALL
        SELECT extnamespace, 'extension', quote_ident(extname), extowner, 'pg_extension'::regclass::oid, oid
          FROM pg_extension
    )
    SELECT s.nspname::text, 'schema', quote_ident(s.nspname), s.nspowner::regrole::text
      FROM s, pg_namespace h
     WHERE h.oid = (SELECT oid FROM home) AND NOT pg_has_role(s.nspowner, h.nspowner, 'MEMBER')
    UNION ALL
    SELECT s.nspname::text, 'CREATE privilege', quote_ident(s.nspname),
           CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
      FROM s, aclexplode(s.nspacl) a
     WHERE a.privilege_type = 'CREATE' AND (a.grantee = 0 OR NOT pg_has_role(a.grantee, s.nspowner, 'MEMBER'))
    UNION ALL
    SELECT s.nspname::text, o.kind, o.object, o.owner::regrole::text
      FROM objects o JOIN s ON s.oid = o.nsp
     WHERE NOT pg_has_role(o.owner, s.nspowner, 'MEMBER')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = o.classid AND d.objid = o.objid AND d.deptype IN ('i', 'e'))
     ORDER BY 1, 2, 3
$$;

COMMENT ON FUNCTION goalrt.foreign_objects() IS
    'What roles other than the owners put in goalrt''s schemas, and who else may create there (empty when sound).';

REVOKE ALL ON SCHEMA goalrt FROM PUBLIC;
-- The schema may be older than this file (a downgrade to base leaves it, a
-- DBA may have made it): no role but its owner keeps CREATE on it.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a
              WHERE n.oid = (SELECT c.relnamespace FROM pg_class c WHERE c.oid = 'goalrt.settings'::regclass)
                AND a.privilege_type = 'CREATE' AND a.grantee NOT IN (0, n.nspowner) LOOP
        EXECUTE format('REVOKE CREATE ON SCHEMA goalrt FROM %s CASCADE', r);
    END LOOP;
END
$$;
REVOKE ALL ON ALL TABLES IN SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA goalrt FROM PUBLIC;

DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA goalrt TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
    -- (SELECT on goalrt.alembic_version, the schema's revision, which every goalrt command checks
    -- first: granted once alembic made the table, see apply_schema.)
    -- Everyone reads: the log, the state, the goals, the coordination and GDL tables.
    GRANT SELECT ON goalrt.events, goalrt.event_data, goalrt.event_order, goalrt.clock,
                    goalrt.state, goalrt.state_data, goalrt.snapshots, goalrt.snapshot_entries,
                    goalrt.settings, goalrt.forks,
                    goalrt.goals, goalrt.goal_steps, goalrt.goal_types, goalrt.workers,
                    goalrt.goal_waits, goalrt.limits, goalrt.limit_buckets, goalrt.limit_holders,
                    goalrt.waiting_goals,
                    goalrt.gdl_versions, goalrt.gdl_policies, goalrt.gdl_triggers, goalrt.gdl_events,
                    goalrt.schedules
        TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
    GRANT EXECUTE ON FUNCTION
        goalrt.read_events(bigint, integer, text, text, boolean),
        goalrt.tick(integer),
        goalrt.verify_chain(),
        goalrt.chain_head(),
        goalrt.anchor_problem(bigint, bytea),
        goalrt.verify_anchors(bigint[], bytea[]),
        goalrt.event_digest(bigint, text, text, jsonb, jsonb, timestamptz, text),
        goalrt.chain_hash(bytea, bigint, bytea),
        goalrt.glob_to_like(text),
        goalrt.foreign_objects(),
        goalrt.json_too_deep(jsonb),
        goalrt.json_depth_error(text, jsonb),
        -- State: readers read it (and may take the automatic snapshots that state_at needs).
        goalrt.valid_path(text),
        goalrt.path_pattern_regex(text),
        goalrt.path_pattern_prefix(text),
        goalrt.fold_value(jsonb, boolean, jsonb, numeric),
        goalrt.fold_changes(bigint, bigint, text),
        goalrt.base_pos(),
        goalrt.check_pos(bigint),
        goalrt.state_fold(bigint, text, boolean),
        goalrt.state_at(bigint, text),
        goalrt.state_at_time(timestamptz, text),
        goalrt.pos_at(timestamptz),
        goalrt.state_history(text),
        goalrt.auto_snapshot(bigint),
        -- Goals, coordination, GDL policies.
        goalrt.schema_types(jsonb),
        goalrt.params_problem(jsonb, jsonb),
        goalrt.unserved_action(goalrt.goals),
        goalrt.json_problem(jsonb, jsonb, text),
        goalrt.partition_of(text, integer),
        goalrt.step_problem(jsonb, text),
        goalrt.goal_tree(bigint),
        goalrt.policy_holds(jsonb, jsonb),
        goalrt.policy_term(jsonb, jsonb),
        goalrt.policy_equal(jsonb, jsonb),
        goalrt.policy_keys(text),
        goalrt.policy_key_live(text)
        TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
    GRANT EXECUTE ON PROCEDURE goalrt.tick_commit(integer, bigint)
        TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
    -- An application: appends, changes state, submits, cancels and resumes goals.
    GRANT EXECUTE ON FUNCTION
        goalrt.append_event(text, text, jsonb, jsonb),
        goalrt.append_events(jsonb),
        goalrt.change_state(jsonb, text, jsonb),
        goalrt.state_freeze(integer),
        goalrt.submit_goal(text, jsonb, jsonb),
        goalrt.submit_goals(jsonb),
        goalrt.cancel_goal(bigint, text),
        goalrt.resume_goal(bigint, jsonb, text),
        goalrt.retry_goal(bigint, integer, text),
        goalrt.set_schedule(text, text, jsonb, jsonb),
        goalrt.drop_schedule(text)
        TO goalrt_writer, goalrt_admin, goalrt_app;
    -- A worker: runs goals under the leases its login role takes.
    GRANT EXECUTE ON FUNCTION
        goalrt.register_goal_type(text, jsonb),
        goalrt.register_worker_v1(text, text, text, integer, integer, text[], text[]),
        goalrt.register_worker_v2(text, text, text, integer, integer, text[], text[], integer[], integer),
        goalrt.deregister_worker_v1(text),
        goalrt.claim_goals_v1(text, integer, double precision, text[]),
        goalrt.claim_goals_v2(text, integer, double precision, text[], integer[], integer, double precision),
        goalrt.claim_goals_v3(text, integer, double precision, text[], integer[], integer, double precision),
        goalrt.plan_goals_v1(text, jsonb, double precision),
        goalrt.complete_steps_v1(text, jsonb, double precision),
        goalrt.fail_goals_v1(text, jsonb),
        goalrt.heartbeat_v1(text, bigint[], bigint[], double precision),
        goalrt.release_goals_v1(text, bigint[], bigint[]),
        goalrt.step_start_v1(text, bigint, bigint, integer),
        goalrt.step_start_v2(text, bigint[], bigint[], integer[]),
        goalrt.step_started_v1(bigint),
        goalrt.step_progress_v1(text, bigint, bigint, integer, double precision, text),
        goalrt.wake_due_v1(integer),
        goalrt.fire_schedules_v1(jsonb)
        TO goalrt_writer, goalrt_admin, goalrt_worker;
    -- An admin: GDL, limits, named snapshots, settings, forks.
    GRANT EXECUTE ON FUNCTION
        goalrt.load_gdl(text, text, jsonb, jsonb),
        goalrt.set_limit(text, jsonb),
        goalrt.drop_limit(text, text),
        goalrt.advance_timers(double precision),
        goalrt.create_snapshot(text, text[], text)
        TO goalrt_admin;
    GRANT INSERT, UPDATE, DELETE ON goalrt.settings, goalrt.forks TO goalrt_admin;
END
$$;
