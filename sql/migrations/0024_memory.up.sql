-- Agent memory (issue 22 item 3): goalrt.memory, goalrt.memory_meanings (with a vector column and
-- an HNSW index where pgvector is), goalrt.memory_cursor, and the functions to search, index and reset it.

-- Where the indexer is: every event with pos <= cursor_pos has its entry (or
-- was passed over on purpose). One row. The embedder named here made every
-- vector in the table; another may index only after `goalrt memory reset`.
CREATE TABLE goalrt.memory_cursor (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    cursor_pos  bigint  NOT NULL DEFAULT 0 CHECK (cursor_pos >= 0),
    embedder    text,
    dims        integer CHECK (dims > 0),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO goalrt.memory_cursor DEFAULT VALUES;

COMMENT ON TABLE goalrt.memory_cursor IS
    'The memory indexer''s durable position in the log, and the embedder its vectors came from.';

-- One entry per event position: the primary key is what makes an event
-- indexed at most once, whatever two indexers do.
CREATE TABLE goalrt.memory (
    pos         bigint      PRIMARY KEY,
    event_id    bigint      NOT NULL,
    stream      text        NOT NULL,
    type        text        NOT NULL,
    tenant      text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    body        text        NOT NULL CHECK (length(body) <= 8000),
    tsv         tsvector    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, body)) STORED,
    -- Its row in memory_meanings (NULL: indexed without an embedder, or without pgvector).
    meaning     bigint
);
CREATE INDEX memory_tsv_idx ON goalrt.memory USING gin (tsv);
CREATE INDEX memory_recorded_idx ON goalrt.memory (recorded_at);
CREATE INDEX memory_meaning_idx ON goalrt.memory (meaning, pos);

-- One row per distinct text embedded (goalrt.memory.text.meaning_text): its
-- sha256 and, where pgvector is, its embedding.
CREATE TABLE goalrt.memory_meanings (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest  bytea  NOT NULL UNIQUE CHECK (length(digest) = 32)
);

COMMENT ON TABLE goalrt.memory_meanings IS
    'Agent memory: one embedding per distinct text embedded, shared by every event with that text.';

COMMENT ON TABLE goalrt.memory IS
    'Agent memory: the searchable text (and, with pgvector, the embedding) of each indexed event.';

-- The vector column and its HNSW index exist only where pgvector does
-- (00_extensions.sql creates it where the server has it). 256 dimensions:
-- the default embedder's (wordllama l2_supercat); an embeddings endpoint is
-- asked for 256 too. The type is named through the extension's schema:
-- goalrt's functions do not search public.
DO $$
DECLARE
    ext text := (SELECT n.nspname FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
                  WHERE x.extname = 'vector');
BEGIN
    IF ext IS NOT NULL THEN
        EXECUTE format('ALTER TABLE goalrt.memory_meanings ADD COLUMN embedding %I.vector(256) NOT NULL', ext);
        EXECUTE format('CREATE INDEX memory_meanings_embedding_idx ON goalrt.memory_meanings '
                       'USING hnsw (embedding %I.vector_cosine_ops)', ext);
    END IF;
END
$$;

-- The schema of pgvector when memory_meanings has its vector column, else NULL.
CREATE FUNCTION goalrt.memory_vector_schema() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT n.nspname::text
      FROM pg_attribute a
      JOIN pg_type t ON t.oid = a.atttypid
      JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE a.attrelid = 'goalrt.memory_meanings'::regclass AND a.attname = 'embedding' AND NOT a.attisdropped
$$;

-- What search can use and how far the index is: one row.
CREATE FUNCTION goalrt.memory_status()
RETURNS TABLE (vectors boolean, cursor_pos bigint, head bigint, entries bigint, embedder text, dims integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT goalrt.memory_vector_schema() IS NOT NULL, c.cursor_pos, (SELECT k.head FROM goalrt.clock k),
           (SELECT count(*) FROM goalrt.memory m
             WHERE m.tenant = goalrt.current_tenant() OR goalrt.current_tenant() = '*'),
           c.embedder, c.dims
      FROM goalrt.memory_cursor c
$$;

COMMENT ON FUNCTION goalrt.memory_status() IS
    'Whether memory has vectors, the indexer''s position, the log''s head, the caller''s tenant''s entries and the embedder.';

-- What search can use, cheaply (memory_status counts the entries): whether
-- the table has vectors, and the embedder they came from.
CREATE FUNCTION goalrt.memory_mode() RETURNS TABLE (vectors boolean, embedder text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
    SELECT goalrt.memory_vector_schema() IS NOT NULL, c.embedder FROM goalrt.memory_cursor c
$$;

COMMENT ON FUNCTION goalrt.memory_mode() IS
    'Whether memory has vectors, and the embedder they came from (what search needs to know).';

-- The indexer's next events: those positioned after the cursor, of every
-- tenant, in pos order (positions are gapless and handed out at commit: a
-- pos > N read is safe as written, docs/event-log.md).
CREATE FUNCTION goalrt.memory_pending(max_count integer DEFAULT 500)
RETURNS TABLE (pos bigint, event_id bigint, stream text, type text, data jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    IF max_count IS NULL OR max_count < 1 OR max_count > 10000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 10000' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT o.pos, e.id, e.stream, e.type, e.data
      FROM goalrt.event_order o
      JOIN goalrt.event_data e ON e.id = o.event_id
     WHERE o.pos > (SELECT c.cursor_pos FROM goalrt.memory_cursor c)
     ORDER BY o.pos
     LIMIT max_count;
END
$$;

COMMENT ON FUNCTION goalrt.memory_pending(integer) IS
    'Indexer: the events after the memory cursor (every tenant''s), in pos order.';

-- Record the entries of the events after_pos < pos <= upto_pos and move the
-- cursor to upto_pos, in one transaction. entries: [{pos, body, digest?,
-- embedding?}]: digest, the sha256 (hex) of the entry's meaning text;
-- embedding (pgvector's text of 256 numbers) with at least the first entry
-- of a digest not yet in memory_meanings; both only where there are vectors.
-- The stream, type, tenant and time come from the log, not from the caller.
-- Refused (40001) when the cursor is no longer at after_pos: another indexer
-- got there first, and this batch is already in.
CREATE FUNCTION goalrt.memory_index(after_pos bigint, upto_pos bigint, entries jsonb, embedder_name text, embedder_dims integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    c    goalrt.memory_cursor;
    ext  text := goalrt.memory_vector_schema();
    n    bigint;
BEGIN
    IF jsonb_typeof(entries) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'entries must be a JSON array' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO c FROM goalrt.memory_cursor FOR UPDATE;
    IF c.cursor_pos <> after_pos THEN
        RAISE EXCEPTION 'the memory cursor is at %, not %: another indexer moved it', c.cursor_pos, after_pos
            USING ERRCODE = '40001';
    END IF;
    IF upto_pos < after_pos OR upto_pos > (SELECT k.head FROM goalrt.clock k)
       OR NOT EXISTS (SELECT 1 FROM goalrt.event_order o WHERE o.pos = upto_pos) AND upto_pos > after_pos THEN
        RAISE EXCEPTION 'upto_pos % is not a position after % in the log', upto_pos, after_pos USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(entries) x
                WHERE jsonb_typeof(x -> 'pos') IS DISTINCT FROM 'number'
                   OR (x ->> 'pos')::numeric <= after_pos OR (x ->> 'pos')::numeric > upto_pos
                   OR jsonb_typeof(x -> 'body') IS DISTINCT FROM 'string') THEN
        RAISE EXCEPTION 'each entry needs a pos in (%, %] and a body', after_pos, upto_pos USING ERRCODE = '22023';
    END IF;
    IF ext IS NOT NULL AND embedder_name IS NOT NULL THEN
        IF c.embedder IS NOT NULL AND (c.embedder, c.dims) IS DISTINCT FROM (embedder_name, embedder_dims) THEN
            RAISE EXCEPTION 'memory holds vectors of embedder % (% dimensions), not %: run `goalrt memory reset` to index again',
                c.embedder, c.dims, embedder_name USING ERRCODE = '22023';
        END IF;
        EXECUTE format(
            'INSERT INTO goalrt.memory_meanings (digest, embedding)
             SELECT DISTINCT ON (d) d, e::%I.vector
               FROM (SELECT decode(x ->> ''digest'', ''hex'') AS d, x ->> ''embedding'' AS e
                       FROM jsonb_array_elements($1) x WHERE x ? ''embedding'' AND x ? ''digest'') y
              ORDER BY d
             ON CONFLICT (digest) DO NOTHING', ext)
        USING entries;
        INSERT INTO goalrt.memory (pos, event_id, stream, type, tenant, recorded_at, body, meaning)
        SELECT o.pos, e.id, e.stream, e.type, o.tenant, e.recorded_at, x ->> 'body', mm.id
          FROM jsonb_array_elements(entries) x
          JOIN goalrt.event_order o ON o.pos = (x ->> 'pos')::bigint
          JOIN goalrt.event_data e ON e.id = o.event_id
          LEFT JOIN goalrt.memory_meanings mm ON mm.digest = decode(x ->> 'digest', 'hex');
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE goalrt.memory_cursor
           SET cursor_pos = upto_pos, embedder = embedder_name, dims = embedder_dims, updated_at = clock_timestamp();
    ELSE
        INSERT INTO goalrt.memory (pos, event_id, stream, type, tenant, recorded_at, body)
        SELECT o.pos, e.id, e.stream, e.type, o.tenant, e.recorded_at, x ->> 'body'
          FROM jsonb_array_elements(entries) x
          JOIN goalrt.event_order o ON o.pos = (x ->> 'pos')::bigint
          JOIN goalrt.event_data e ON e.id = o.event_id;
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE goalrt.memory_cursor SET cursor_pos = upto_pos, updated_at = clock_timestamp();
    END IF;
    RETURN n;
END
$$;

COMMENT ON FUNCTION goalrt.memory_index(bigint, bigint, jsonb, text, integer) IS
    'Indexer: add the entries of the events after after_pos up to upto_pos and move the cursor there (40001 if it moved).';

-- Forget every entry and start again from position 0 (another embedder, or
-- other fields chosen). The next indexer run rebuilds the whole index.
CREATE FUNCTION goalrt.memory_reset() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
BEGIN
    PERFORM 1 FROM goalrt.memory_cursor FOR UPDATE;
    TRUNCATE goalrt.memory, goalrt.memory_meanings;
    UPDATE goalrt.memory_cursor SET cursor_pos = 0, embedder = NULL, dims = NULL, updated_at = clock_timestamp();
END
$$;

COMMENT ON FUNCTION goalrt.memory_reset() IS
    'Forget the memory index; the next indexer run rebuilds it from the start of the log.';

-- The entries closest to a query, of the caller's tenant: by words and,
-- when query_embedding is given and the table has vectors, by cosine
-- distance (HNSW); the two rankings are fused by reciprocal rank (k = 60),
-- each taking its best max(4 * max_count, 40) candidates. By words: the
-- entries holding all of the query's words when there are that many
-- candidates, else those holding any of them (a question rarely repeats an
-- event's every word), ranked by ts_rank_cd. Of the entries holding all
-- the words, only the newest 5,000 are ranked (a query in common words,
-- which an eighth of the history holds, ranked every match: 260 ms at 3*10^5
-- entries, 22 to 36 ms so); of those holding any, all (capped so too, the
-- few with a rare word among the many with a common one were cut off: the
-- bench's queries in an event's words found it 77% of the time, not 97%).
-- type_pattern is a glob
-- (goal.*); since keeps entries recorded at or after it. Each query is
-- planned for its actual values (EXECUTE): a cached generic plan over a
-- tsquery parameter scans the whole table.
CREATE FUNCTION goalrt.memory_search(
    query text, query_embedding jsonb DEFAULT NULL, type_pattern text DEFAULT NULL,
    since timestamptz DEFAULT NULL, max_count integer DEFAULT 10
) RETURNS TABLE (pos bigint, event_id bigint, stream text, type text, recorded_at timestamptz, body text,
                 score double precision, text_rank integer, vector_rank integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, goalrt, pg_temp AS $$
DECLARE
    t       text := goalrt.current_tenant();
    ext     text := goalrt.memory_vector_schema();
    q       tsquery;
    cand    integer;
    enough  boolean;
    filters CONSTANT text := ' AND (x.tenant = $3 OR $3 = ''*'')'
                             ' AND ($4::text IS NULL OR x.type LIKE goalrt.glob_to_like($4))'
                             ' AND ($5::timestamptz IS NULL OR x.recorded_at >= $5)';
    near    text := 'SELECT NULL::bigint AS pos, NULL::bigint AS rk WHERE false';
BEGIN
    IF query IS NULL OR btrim(query) = '' THEN
        RAISE EXCEPTION 'the query must not be empty' USING ERRCODE = '22023';
    END IF;
    IF length(query) > 4000 THEN
        RAISE EXCEPTION 'the query is % characters long; at most 4000', length(query) USING ERRCODE = '22023';
    END IF;
    IF max_count IS NULL OR max_count < 1 OR max_count > 1000 THEN
        RAISE EXCEPTION 'max_count must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    IF query_embedding IS NOT NULL AND jsonb_typeof(query_embedding) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'query_embedding must be a JSON array of numbers' USING ERRCODE = '22023';
    END IF;
    cand := greatest(4 * max_count, 40);
    q := plainto_tsquery('english'::regconfig, query);
    EXECUTE 'SELECT count(*) >= $6 FROM (SELECT 1 FROM goalrt.memory x WHERE x.tsv @@ $1' || filters || ' LIMIT $6) y'
       INTO enough USING q, NULL::text, t, type_pattern, since, cand;
    IF NOT enough THEN
        q := replace(q::text, ' & ', ' | ')::tsquery;
    END IF;
    IF ext IS NOT NULL AND query_embedding IS NOT NULL THEN
        -- The nearest meanings, then each one's latest (at most 3) entries the caller may see.
        near := format(
            'SELECT z.pos, row_number() OVER (ORDER BY z.d, z.pos DESC) AS rk
               FROM (SELECT y.pos, v.d
                       FROM (SELECT mm.id, mm.embedding OPERATOR(%1$I.<=>) ($2::text)::%1$I.vector AS d
                               FROM goalrt.memory_meanings mm
                              ORDER BY mm.embedding OPERATOR(%1$I.<=>) ($2::text)::%1$I.vector
                              LIMIT $6) v
                       CROSS JOIN LATERAL (SELECT x.pos FROM goalrt.memory x
                                            WHERE x.meaning = v.id %2$s
                                            ORDER BY x.pos DESC LIMIT 3) y) z
              ORDER BY z.d, z.pos DESC
              LIMIT $6', ext, filters);
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH matches AS (
             SELECT x.pos, x.tsv FROM goalrt.memory x WHERE x.tsv @@ $1 %s ORDER BY x.pos DESC %s),
         words AS (
             SELECT x.pos, row_number() OVER (ORDER BY ts_rank_cd(x.tsv, $1) DESC, x.pos DESC) AS rk
               FROM matches x
              ORDER BY ts_rank_cd(x.tsv, $1) DESC, x.pos DESC
              LIMIT $6),
         near AS (%s),
         fused AS (
             SELECT coalesce(w.pos, n.pos) AS pos, w.rk AS wrk, n.rk AS nrk,
                    coalesce(1.0 / (60 + w.rk), 0) + coalesce(1.0 / (60 + n.rk), 0) AS score
               FROM words w FULL JOIN near n ON n.pos = w.pos)
         SELECT m.pos, m.event_id, m.stream, m.type, m.recorded_at, m.body,
                f.score::double precision, f.wrk::integer, f.nrk::integer
           FROM fused f JOIN goalrt.memory m ON m.pos = f.pos
          ORDER BY f.score DESC, m.pos DESC
          LIMIT $7', filters, CASE WHEN enough THEN 'LIMIT 5000' ELSE '' END, near)
    USING q, query_embedding::text, t, type_pattern, since, cand, max_count;
END
$$;

COMMENT ON FUNCTION goalrt.memory_search(text, jsonb, text, timestamptz, integer) IS
    'The caller''s tenant''s memory entries closest to a query: words and (with pgvector) meaning, fused by rank.';

REVOKE ALL ON goalrt.memory, goalrt.memory_cursor, goalrt.memory_meanings FROM PUBLIC;
REVOKE ALL ON FUNCTION goalrt.memory_vector_schema(), goalrt.memory_status(), goalrt.memory_mode(), goalrt.memory_pending(integer),
    goalrt.memory_index(bigint, bigint, jsonb, text, integer), goalrt.memory_reset(),
    goalrt.memory_search(text, jsonb, text, timestamptz, integer) FROM PUBLIC;

-- Every role that reads the log searches its tenant's memory; only admins
-- index (every tenant's events) and reset. Remembering is appending an event
-- (memory.noted), so it is granted with append_event (apps, admins).
DO $$
BEGIN
    IF (SELECT count(*) FROM pg_roles
         WHERE rolname IN ('goalrt_reader', 'goalrt_app', 'goalrt_worker', 'goalrt_writer', 'goalrt_admin')) < 5 THEN
        RETURN;
    END IF;
    GRANT EXECUTE ON FUNCTION goalrt.memory_status(), goalrt.memory_mode(),
        goalrt.memory_search(text, jsonb, text, timestamptz, integer)
        TO goalrt_reader, goalrt_app, goalrt_worker, goalrt_writer, goalrt_admin;
    GRANT EXECUTE ON FUNCTION goalrt.memory_pending(integer), goalrt.memory_index(bigint, bigint, jsonb, text, integer),
        goalrt.memory_reset()
        TO goalrt_admin;
END
$$;
