-- Queries of the fork registry (in the main schema; never rewritten for a fork).

-- name: fork_lookup
-- The fork's schema, and its owner when that is neither (a member of)
-- goalrt's owner nor the current user: the code in such a schema is
-- someone else's, and calling it would run it as the current user.
SELECT f.schema_name,
       CASE WHEN NOT pg_has_role(n.nspowner, g.nspowner, 'MEMBER')
                 AND n.nspowner <> current_user::regrole THEN n.nspowner::regrole::text END
  FROM goalrt.forks f
  LEFT JOIN pg_namespace n ON n.nspname = f.schema_name
  JOIN pg_namespace g ON g.nspname = 'goalrt'
 WHERE f.name = $1::text;

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
