-- Undo 0018: no retry_goal; failed and cancelled are final again.
CREATE OR REPLACE FUNCTION goalrt.check_goal_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    allowed text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'invalid goal transition: a new goal starts pending, not %', NEW.status
                USING ERRCODE = 'GR007';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    allowed := CASE OLD.status
                 WHEN 'pending' THEN ARRAY['active', 'failed', 'cancelled']
                 WHEN 'active'  THEN ARRAY['waiting', 'complete', 'failed', 'cancelled']
                 WHEN 'waiting' THEN ARRAY['active', 'failed', 'cancelled']
                 ELSE '{}'::text[]
               END;
    IF NOT NEW.status = ANY (allowed) THEN
        RAISE EXCEPTION 'invalid goal transition for goal %: % -> % (%)', OLD.id, OLD.status, NEW.status,
            CASE WHEN cardinality(allowed) = 0 THEN OLD.status || ' is final'
                 ELSE 'from ' || OLD.status || ' only to ' || array_to_string(allowed, ', ') END
            USING ERRCODE = 'GR007';
    END IF;
    RETURN NEW;
END
$$;

DROP FUNCTION goalrt.retry_goal(bigint, integer, text);
