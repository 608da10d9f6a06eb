-- Undo 0029_revision_readable.
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    REVOKE SELECT ON goalrt.alembic_version FROM goalrt_reader, goalrt_writer, goalrt_admin, goalrt_app, goalrt_worker;
END
$$;
