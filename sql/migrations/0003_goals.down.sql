-- goalrt migration 0003 (down): remove goals.
--
-- The goals' events stay in the log: events are never removed.

DROP FUNCTION goalrt.release_goals_v1(text, bigint[], bigint[]);
DROP FUNCTION goalrt.heartbeat_v1(text, bigint[], bigint[], double precision);
DROP FUNCTION goalrt.fail_goals_v1(text, jsonb);
DROP FUNCTION goalrt.complete_steps_v1(text, jsonb, double precision);
DROP FUNCTION goalrt.plan_goals_v1(text, jsonb, double precision);
DROP FUNCTION goalrt.lease_lost_reason(goalrt.goals, text, bigint);
DROP FUNCTION goalrt.holds_lease(goalrt.goals, text, bigint);
DROP FUNCTION goalrt.claim_goals_v1(text, integer, double precision, text[]);
DROP FUNCTION goalrt.deregister_worker_v1(text);
DROP FUNCTION goalrt.register_worker_v1(text, text, text, integer, integer, text[], text[]);
DROP FUNCTION goalrt.cancel_goal(bigint, text);
DROP FUNCTION goalrt.submit_goals(jsonb);
DROP FUNCTION goalrt.submit_goal(text, jsonb, jsonb);
DROP FUNCTION goalrt.submit_one(text, jsonb, jsonb, text);
DROP FUNCTION goalrt.params_problem(jsonb, jsonb);
DROP FUNCTION goalrt.schema_types(jsonb);
DROP FUNCTION goalrt.register_goal_type(text, jsonb);
DROP TRIGGER goals_lifecycle ON goalrt.goals;
DROP FUNCTION goalrt.check_goal_transition();
DROP TABLE goalrt.workers;
DROP TABLE goalrt.goal_steps;
DROP TABLE goalrt.goals;
DROP TABLE goalrt.goal_types;
