-- Undo 0024: no agent memory.
DROP FUNCTION goalrt.memory_search(text, jsonb, text, timestamptz, integer);
DROP FUNCTION goalrt.memory_reset();
DROP FUNCTION goalrt.memory_index(bigint, bigint, jsonb, text, integer);
DROP FUNCTION goalrt.memory_pending(integer);
DROP FUNCTION goalrt.memory_status();
DROP FUNCTION goalrt.memory_mode();
DROP FUNCTION goalrt.memory_vector_schema();
DROP TABLE goalrt.memory;
DROP TABLE goalrt.memory_meanings;
DROP TABLE goalrt.memory_cursor;
