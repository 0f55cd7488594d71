-- What each vector table serves, for search and for the shadow builds that replace it.
-- One row per served table: the embedding model of every vector in it (search embeds its query with
-- this model and nothing else), the HNSW index kind over it, and a generation bumped by each swap.
-- Written in the same transaction as the swap, so a reader never sees a table and a model that differ.
CREATE TABLE meta.vector_serving (
    table_name      text        PRIMARY KEY,
    embedding_model text,                            -- null while the table is empty
    index_kind      text        NOT NULL DEFAULT 'vector' CHECK (index_kind IN ('vector', 'halfvec', 'bit')),
    generation      integer     NOT NULL DEFAULT 0,  -- swaps so far
    rows_served     bigint      NOT NULL DEFAULT 0,
    swapped_at      timestamptz NOT NULL DEFAULT now()
);
-- The table as 003 created it (vector index); an existing catalogue keeps serving its one model.
INSERT INTO meta.vector_serving (table_name, embedding_model, index_kind, rows_served)
SELECT 'vectors.content_vectors', min(embedding_model), 'vector', count(*) FROM vectors.content_vectors;

-- Shadow builds (bulk rebuilds and model changes): the new table is loaded beside the served one in
-- hash buckets of the key, one committed transaction per bucket, so a run that dies continues with the
-- buckets not yet done; then it is indexed and swapped in by one short transaction.
CREATE TABLE meta.shadow_builds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name      text        NOT NULL,
    shadow_table    text        NOT NULL,
    embedding_model text        NOT NULL,
    index_kind      text        NOT NULL CHECK (index_kind IN ('vector', 'halfvec', 'bit')),
    reason          text        NOT NULL,
    buckets         integer     NOT NULL CHECK (buckets > 0),
    buckets_done    integer[]   NOT NULL DEFAULT '{}',
    rows_loaded     bigint      NOT NULL DEFAULT 0,
    state           text        NOT NULL DEFAULT 'loading'
                    CHECK (state IN ('loading', 'indexing', 'swapped', 'abandoned')),
    resumed         integer     NOT NULL DEFAULT 0,  -- runs that picked this build up after a failure
    index_build_s   double precision,
    swap_ms         double precision,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- at most one unfinished build per served table
CREATE UNIQUE INDEX shadow_builds_open_idx ON meta.shadow_builds (table_name) WHERE state IN ('loading', 'indexing');

-- The serving ef_search is chosen for one table state: the rows and the index build it was measured
-- on. The recall check measures again only when either changed (its exact ground truth is a brute-force
-- scan per query, the costliest part of a no-change rerun at 100k titles).
ALTER TABLE meta.serving_settings ADD COLUMN table_rows bigint, ADD COLUMN built_at timestamptz,
    ADD COLUMN tuned_for text;  -- the check's parameters (target, budget, ladder limit, queries) it was chosen under
