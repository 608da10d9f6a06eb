-------------------------------------------------------------------------------
-- Roles and privileges
--
-- Three group roles (NOLOGIN; grant them to your login roles):
--   goalrt_reader  reads the log (the view, read_events, verify_chain, tick_commit)
--   goalrt_writer  reader + appends through the append functions only
--   goalrt_admin   writer + may create objects in the goalrt schema
-- Roles are cluster-wide, so they are created only when missing and are not
-- dropped by a downgrade (another database may use them).
-------------------------------------------------------------------------------

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['goalrt_reader', 'goalrt_writer', 'goalrt_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'goalrt: this role may not create roles; create goalrt_reader, goalrt_writer and goalrt_admin yourself';
END
$$;

REVOKE ALL ON SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA goalrt FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA goalrt FROM PUBLIC;

DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA goalrt TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT CREATE ON SCHEMA goalrt TO goalrt_admin;
    GRANT SELECT ON goalrt.events, goalrt.event_data, goalrt.event_order, goalrt.clock
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.read_events(bigint, integer, text, text, boolean),
        goalrt.tick(integer),
        goalrt.verify_chain(),
        goalrt.event_digest(bigint, text, text, jsonb, jsonb, timestamptz),
        goalrt.chain_hash(bytea, bigint, bytea),
        goalrt.glob_to_like(text),
        goalrt.json_too_deep(jsonb),
        goalrt.json_depth_error(text, jsonb)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON PROCEDURE goalrt.tick_commit(integer, bigint) TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.append_event(text, text, jsonb, jsonb),
        goalrt.append_events(jsonb)
        TO goalrt_writer, goalrt_admin;
    -- State: readers read it (and may take the automatic snapshots that
    -- state_at needs); writers change it and take named snapshots.
    GRANT SELECT ON goalrt.state, goalrt.state_data, goalrt.snapshots, goalrt.snapshot_entries,
                    goalrt.settings, goalrt.forks
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
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
        goalrt.auto_snapshot(bigint)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.change_state(jsonb, text, jsonb),
        goalrt.create_snapshot(text, text[], text),
        goalrt.state_freeze(integer)
        TO goalrt_writer, goalrt_admin;
    -- Goals: readers see them; writers submit, cancel and run them (workers
    -- are writers).
    GRANT SELECT ON goalrt.goals, goalrt.goal_steps, goalrt.goal_types, goalrt.workers
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.schema_types(jsonb),
        goalrt.params_problem(jsonb, jsonb)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.register_goal_type(text, jsonb),
        goalrt.submit_goal(text, jsonb, jsonb),
        goalrt.submit_goals(jsonb),
        goalrt.cancel_goal(bigint, text),
        goalrt.register_worker_v1(text, text, text, integer, integer, text[], text[]),
        goalrt.deregister_worker_v1(text),
        goalrt.claim_goals_v1(text, integer, double precision, text[]),
        goalrt.plan_goals_v1(text, jsonb, double precision),
        goalrt.complete_steps_v1(text, jsonb, double precision),
        goalrt.fail_goals_v1(text, jsonb),
        goalrt.heartbeat_v1(text, bigint[], bigint[], double precision),
        goalrt.release_goals_v1(text, bigint[], bigint[])
        TO goalrt_writer, goalrt_admin;
    -- Coordination: waits, limits, trees.
    GRANT SELECT ON goalrt.goal_waits, goalrt.limits, goalrt.limit_buckets, goalrt.limit_holders,
                    goalrt.waiting_goals
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.json_problem(jsonb, jsonb, text),
        goalrt.partition_of(text, integer),
        goalrt.step_problem(jsonb, text),
        goalrt.goal_tree(bigint)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.resume_goal(bigint, jsonb, text),
        goalrt.set_limit(text, jsonb),
        goalrt.drop_limit(text, text),
        goalrt.wake_due_v1(integer),
        goalrt.register_worker_v2(text, text, text, integer, integer, text[], text[], integer[], integer),
        goalrt.claim_goals_v2(text, integer, double precision, text[], integer[], integer, double precision)
        TO goalrt_writer, goalrt_admin;
    -- GDL: definitions, policies, triggers.
    GRANT SELECT ON goalrt.gdl_versions, goalrt.gdl_policies, goalrt.gdl_triggers
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION
        goalrt.policy_holds(jsonb, jsonb),
        goalrt.policy_term(jsonb, jsonb),
        goalrt.policy_equal(jsonb, jsonb),
        goalrt.policy_keys(text),
        goalrt.policy_key_live(text)
        TO goalrt_reader, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION goalrt.load_gdl(text, text, jsonb, jsonb) TO goalrt_admin;
    GRANT INSERT, UPDATE, DELETE ON goalrt.settings, goalrt.forks TO goalrt_admin;
END
$$;
