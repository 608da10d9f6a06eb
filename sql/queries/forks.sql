-- Queries of the fork registry (in the main schema; never rewritten for a fork).

-- name: fork_lookup
SELECT schema_name FROM goalrt.forks WHERE name = $1::text;

-- name: forks_list
SELECT name, schema_name, base_pos, revision, created_at FROM goalrt.forks ORDER BY name;

-- name: fork_get
SELECT name, schema_name, base_pos, revision, created_at FROM goalrt.forks WHERE name = $1::text;

-- name: fork_register
INSERT INTO goalrt.forks (name, schema_name, base_pos, base_hash, revision)
VALUES ($1::text, $2::text, $3::bigint, $4::bytea, (SELECT version_num FROM goalrt.alembic_version))
RETURNING name, schema_name, base_pos, revision, created_at;

-- name: fork_unregister
DELETE FROM goalrt.forks WHERE name = $1::text;

-- name: fork_base_hash
SELECT coalesce((SELECT hash FROM goalrt.event_order WHERE pos = $1::bigint),
                (SELECT base_hash FROM goalrt.clock WHERE base_pos = $1::bigint),
                decode(repeat('00', 32), 'hex'));

-- name: fork_check_pos
SELECT goalrt.check_pos($1::bigint), goalrt.auto_snapshot($1::bigint);
