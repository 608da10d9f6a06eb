-- Named queries about stored GDL versions (goalrt/gdl/runtime.py; the console's GDL page).

-- name: gdl_versions_list
-- The newest $1 versions, newest first, without their definitions.
SELECT version, workspace, content_hash, loaded_at, loaded_by
  FROM goalrt.gdl_versions ORDER BY version DESC LIMIT $1::integer;

-- name: gdl_version_get
SELECT version, workspace, content_hash, definitions FROM goalrt.gdl_versions WHERE version = $1::bigint;
