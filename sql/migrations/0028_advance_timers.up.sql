-- goalrt test's `then advance` through a function (issue 20): advance_timers brings a fork's timers closer
-- (wake_at, deadlines, delayed starts) and refuses the main schema; admins only.

CREATE FUNCTION goalrt.advance_timers(seconds double precision) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    home text;
    n    integer;
BEGIN
    home := (SELECT c.relnamespace::regnamespace::text FROM pg_class c WHERE c.oid = 'goalrt.goals'::regclass);
    -- ('goal' || 'rt': spelt so that a fork's copy of this function, whose
    -- qualified names are rewritten, still compares with the main schema.)
    IF home = 'goal' || 'rt' THEN
        RAISE EXCEPTION 'advance_timers works in a fork only (goalrt test): the timers of schema % are real', home
            USING ERRCODE = 'GR008';
    END IF;
    IF seconds IS NULL OR seconds < 0 OR seconds = 'infinity'::double precision THEN
        RAISE EXCEPTION 'seconds must be a finite number >= 0' USING ERRCODE = 'GR008';
    END IF;
    UPDATE goalrt.goals g
       SET wake_at = g.wake_at - make_interval(secs => seconds),
           deadline_at = g.deadline_at - make_interval(secs => seconds),
           run_at = CASE WHEN g.status = 'pending' AND g.run_at > now()
                         THEN greatest(g.run_at - make_interval(secs => seconds), now()) ELSE g.run_at END
     WHERE g.status IN ('pending', 'active', 'waiting')
       AND (g.wake_at IS NOT NULL OR g.deadline_at IS NOT NULL OR (g.status = 'pending' AND g.run_at > now()));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION goalrt.advance_timers(double precision) IS
    'goalrt test: bring the timers of a fork''s unfinished goals closer by seconds (refused in the main schema).';

REVOKE ALL ON FUNCTION goalrt.advance_timers(double precision) FROM PUBLIC;
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles WHERE rolname = 'goalrt_admin') = 1 THEN
        GRANT EXECUTE ON FUNCTION goalrt.advance_timers(double precision) TO goalrt_admin;
    END IF;
END
$$;
