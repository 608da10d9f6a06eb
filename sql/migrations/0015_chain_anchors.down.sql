-- Back to 0014: no anchor functions.

DROP FUNCTION goalrt.verify_anchors(bigint[], bytea[]);
DROP FUNCTION goalrt.anchor_problem(bigint, bytea);
DROP FUNCTION goalrt.chain_head();
