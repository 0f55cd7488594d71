-- One row per content_vectors materialisation: how well the HNSW index served at that moment.
-- The recall history plot and any "did the last rebuild make search worse?" question read from here;
-- Dagster's own metadata keeps only what the UI shows, not the build parameters next to each figure.
CREATE TABLE meta.recall_measurements (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name         text        NOT NULL,
    index_name         text        NOT NULL,
    measured_at        timestamptz NOT NULL DEFAULT now(),
    built_at           timestamptz,                 -- the build measured (meta.index_builds); null if none recorded
    table_rows         bigint      NOT NULL,
    rows_at_last_build bigint,
    m                  integer     NOT NULL,
    ef_construction    integer     NOT NULL,
    ef_search          integer     NOT NULL,        -- the serving ef_search the figures below are for
    k                  integer     NOT NULL,
    recall             double precision NOT NULL CHECK (recall BETWEEN 0 AND 1),
    p50_ms             double precision NOT NULL,
    p99_ms             double precision NOT NULL,
    queries            integer     NOT NULL CHECK (queries > 0),
    index_rebuilt      boolean     NOT NULL,        -- this materialisation rebuilt the index before measuring
    sweep              jsonb       NOT NULL DEFAULT '[]',  -- every ef_search measured: [{ef_search, recall, p50_ms, p99_ms, qps}]
    run_id             text                         -- the Dagster run, when measured by one
);
CREATE INDEX recall_measurements_latest_idx ON meta.recall_measurements (table_name, measured_at DESC);
