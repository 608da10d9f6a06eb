-- Undo 0001: remove the event log. The schema itself stays (alembic keeps its
-- version table there), and so do the cluster-wide roles and the vector
-- extension, which other databases or applications may share.
DROP FUNCTION IF EXISTS goalrt.verify_chain();
DROP FUNCTION IF EXISTS goalrt.read_events(bigint, integer, text, text, boolean);
DROP FUNCTION IF EXISTS goalrt.glob_to_like(text);
DROP FUNCTION IF EXISTS goalrt.tick(integer);
DROP FUNCTION IF EXISTS goalrt.append_events(jsonb);
DROP FUNCTION IF EXISTS goalrt.append_event(text, text, jsonb, jsonb);
DROP FUNCTION IF EXISTS goalrt.chain_hash(bytea, bigint, bytea);
DROP FUNCTION IF EXISTS goalrt.event_digest(bigint, text, text, jsonb, jsonb, timestamptz);
DROP VIEW IF EXISTS goalrt.events;
DROP TABLE IF EXISTS goalrt.clock;
DROP TABLE IF EXISTS goalrt.event_order;
DROP TABLE IF EXISTS goalrt.event_data;
DROP FUNCTION IF EXISTS goalrt.refuse_change();
