-- Every goalrt role may read the schema's revision (goalrt.alembic_version): `goalrt worker`, `goalrt health`
-- and the other commands check it before they start, and a worker logged in as a goalrt_worker role could not.
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    GRANT SELECT ON goalrt.alembic_version TO goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
END
$$;
