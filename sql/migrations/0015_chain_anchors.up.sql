-- Anchors for the hash chain (10_log.sql): goalrt.chain_head() gives the head's
-- position and hash; goalrt.anchor_problem(pos, hash) says why the log does not hold
-- that hash at that position; goalrt.verify_anchors(positions, hashes) recomputes the
-- chain (verify_chain) and checks each anchor. Readers may call all three.

CREATE OR REPLACE FUNCTION goalrt.chain_head()
RETURNS TABLE (pos bigint, hash bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT c.head, c.head_hash FROM goalrt.clock c
$$;

CREATE OR REPLACE FUNCTION goalrt.anchor_problem(anchor_pos bigint, anchor_hash bytea) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    c goalrt.clock;
    held bytea;
BEGIN
    IF anchor_pos IS NULL OR anchor_hash IS NULL THEN
        RAISE EXCEPTION 'an anchor needs a position and a hash' USING ERRCODE = '22023';
    END IF;
    IF length(anchor_hash) <> 32 THEN
        RAISE EXCEPTION 'the hash of anchor % is % bytes long; a sha256 hash is 32', anchor_pos, length(anchor_hash)
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO c FROM goalrt.clock;
    IF anchor_pos > c.head THEN
        RETURN format('the log ends at position %s, before the anchor', c.head);
    ELSIF anchor_pos < c.base_pos THEN
        RETURN format('the anchor is before the start of this log (position %s)', c.base_pos);
    ELSIF anchor_pos = c.base_pos THEN
        held := c.base_hash;
    ELSE
        SELECT o.hash INTO held FROM goalrt.event_order o WHERE o.pos = anchor_pos;
        IF NOT FOUND THEN
            RETURN format('position %s is missing from the log', anchor_pos);
        END IF;
    END IF;
    IF held IS DISTINCT FROM anchor_hash THEN
        RETURN format('position %s holds hash %s', anchor_pos, encode(held, 'hex'));
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION goalrt.verify_anchors(positions bigint[], hashes bytea[])
RETURNS TABLE (ok boolean, checked bigint, first_bad_pos bigint, problem text, anchor_pos bigint,
               anchor_hash bytea)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    chain record;
    a record;
    why text;
BEGIN
    IF positions IS NULL OR hashes IS NULL OR cardinality(positions) <> cardinality(hashes) THEN
        RAISE EXCEPTION 'give one hash for each anchor position (% positions, % hashes)',
            coalesce(cardinality(positions)::text, 'NULL'), coalesce(cardinality(hashes)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO chain FROM goalrt.verify_chain();
    IF NOT chain.ok THEN
        RETURN QUERY SELECT false, chain.checked, chain.first_bad_pos, chain.problem, NULL::bigint, NULL::bytea;
        RETURN;
    END IF;
    FOR a IN SELECT u.p, u.h FROM unnest(positions, hashes) WITH ORDINALITY AS u (p, h, i) ORDER BY u.p, u.i LOOP
        why := goalrt.anchor_problem(a.p, a.h);
        IF why IS NOT NULL THEN
            RETURN QUERY SELECT false, chain.checked, a.p, format('anchor %s:%s: %s', a.p, encode(a.h, 'hex'), why), a.p,
                                a.h;
            RETURN;
        END IF;
    END LOOP;
    RETURN QUERY SELECT true, chain.checked, NULL::bigint, NULL::text, NULL::bigint, NULL::bytea;
END
$$;

COMMENT ON FUNCTION goalrt.chain_head() IS
    'The head of the hash chain (position and hash): an anchor to keep outside the database.';
COMMENT ON FUNCTION goalrt.anchor_problem(bigint, bytea) IS
    'Why the log does not hold this hash at this position (NULL when it does).';
COMMENT ON FUNCTION goalrt.verify_anchors(bigint[], bytea[]) IS
    'verify_chain(), then whether the log still holds each anchor (position, hash); names the first failure.';

REVOKE ALL ON FUNCTION goalrt.chain_head(), goalrt.anchor_problem(bigint, bytea),
                       goalrt.verify_anchors(bigint[], bytea[]) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_writer', 'goalrt_admin')) < 3 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION goalrt.chain_head(), goalrt.anchor_problem(bigint, bytea),
                              goalrt.verify_anchors(bigint[], bytea[])
        TO goalrt_reader, goalrt_writer, goalrt_admin;
END
$$;
