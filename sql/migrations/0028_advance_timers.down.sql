-- Undo 0028_advance_timers.

DROP FUNCTION goalrt.advance_timers(double precision);
