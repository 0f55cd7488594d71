-- Legacy migrations (ChromaDB directories, RuVector JSON/JSONL exports, AgentDB SQLite files).
-- Flow: the reader streams a source into migration_staging (the staged rows and, separately, the
-- source-side manifest of ids and checksums); blocking GX parity checks compare the two; only then
-- one transaction upserts the staged rows into the targets. See docs/migration.md.

CREATE SCHEMA IF NOT EXISTS migration_staging;

-- One row per import attempt (a run of legacy_staging): what the source was, its fingerprint, what
-- was read, what the checks said and what the promotion wrote.
CREATE TABLE meta.legacy_imports (
    import_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_kind  text        NOT NULL CHECK (source_kind IN ('chroma', 'ruvector', 'agentdb')),
    source_path  text        NOT NULL,
    source_key   text        NOT NULL,          -- identity of the source for the id map (kind:path)
    fingerprint  text        NOT NULL,          -- content fingerprint of the whole source
    run_id       text        NOT NULL,
    dry_run      boolean     NOT NULL DEFAULT false,
    accept_rejects boolean   NOT NULL DEFAULT false,  -- quarantined lines may stay behind
    status       text        NOT NULL DEFAULT 'staging'
                 CHECK (status IN ('staging', 'staged', 'unchanged', 'promoted', 'blocked', 'failed')),
    rows_read    bigint      NOT NULL DEFAULT 0,
    rows_rejected bigint     NOT NULL DEFAULT 0,
    rows_written bigint      NOT NULL DEFAULT 0,
    counts       jsonb       NOT NULL DEFAULT '{}',  -- per collection/table: read, insert, update, unchanged
    checks       jsonb       NOT NULL DEFAULT '{}',  -- check name -> {passed, description}
    source_state jsonb       NOT NULL DEFAULT '{}',  -- e.g. Chroma's own state per collection
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX legacy_imports_source_idx ON meta.legacy_imports (source_key, started_at);
CREATE INDEX legacy_imports_run_idx ON meta.legacy_imports (run_id);

-- Source id -> target row, per source, so that re-imports update the same rows and the links
-- between AgentDB tables (skill_links, causal_observations, causal_edges) survive.
CREATE TABLE meta.legacy_id_map (
    source_key   text        NOT NULL,
    collection   text        NOT NULL,          -- Chroma collection, export name, or AgentDB table
    source_id    text        NOT NULL,
    target_table text        NOT NULL,
    target_id    text        NOT NULL,
    fingerprint  text        NOT NULL,          -- of the record as last written
    import_id    bigint      NOT NULL REFERENCES meta.legacy_imports (import_id),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_key, collection, source_id)
);
CREATE INDEX legacy_id_map_target_idx ON meta.legacy_id_map (target_table, target_id);

-- Lines of an export that could not be read, with their line number and reason.
CREATE TABLE meta.legacy_rejects (
    import_id   bigint  NOT NULL REFERENCES meta.legacy_imports (import_id) ON DELETE CASCADE,
    line_number bigint  NOT NULL,
    reason      text    NOT NULL,
    raw         text,
    PRIMARY KEY (import_id, line_number)
);

-- Staged rows, as they will be written (the vector as pgvector, metadata or the converted AgentDB row as jsonb).
CREATE TABLE migration_staging.records (
    import_id  bigint NOT NULL,
    collection text   NOT NULL,
    source_id  text   NOT NULL,
    target     text   NOT NULL,
    document   text,
    metadata   jsonb,
    vec        vector,
    PRIMARY KEY (import_id, collection, source_id)
);

-- What the source holds, computed by the reader from the source's own values: the other side of
-- every parity check. action: insert / update / unchanged against meta.legacy_id_map.
CREATE TABLE migration_staging.manifest (
    import_id   bigint NOT NULL,
    collection  text   NOT NULL,
    source_id   text   NOT NULL,
    dim         integer,
    vec_md5     text,             -- md5 of the float32 values, big-endian, as the source client returned them
    doc_md5     text,
    meta_text   text,             -- canonical JSON of the metadata / converted row
    fingerprint text   NOT NULL,
    action      text   NOT NULL DEFAULT 'insert' CHECK (action IN ('insert', 'update', 'unchanged')),
    PRIMARY KEY (import_id, collection, source_id)
);

-- Per collection/table of an import: where it goes, its dimension and distance space, the source's count.
CREATE TABLE migration_staging.collections (
    import_id    bigint  NOT NULL,
    collection   text    NOT NULL,
    target       text    NOT NULL,
    dim          integer,
    space        text,             -- l2 | cosine | ip
    source_count bigint  NOT NULL, -- what the source says it holds (Chroma's count(), rows in the table)
    state        jsonb   NOT NULL DEFAULT '{}',
    PRIMARY KEY (import_id, collection)
);

-- k-NN parity: sampled source vectors with their exact top-k computed on the source side.
CREATE TABLE migration_staging.knn_queries (
    import_id  bigint  NOT NULL,
    collection text    NOT NULL,
    query_id   text    NOT NULL,
    vec        vector  NOT NULL,
    expected   text[]  NOT NULL,
    kth_distance double precision NOT NULL,
    exact_overlap double precision,   -- filled by the k-NN parity check
    PRIMARY KEY (import_id, collection, query_id)
);

-- vector_store: Chroma ids are unique per collection, not across collections; 768-d legacy vectors
-- (RuVector exports) get their own column, since vectors.content_vectors is the catalogue's table,
-- kept equal to content_embeddings x dim_content by its sync (see docs/migration.md).
ALTER TABLE vectors.vector_store DROP CONSTRAINT vector_store_document_id_key;
ALTER TABLE vectors.vector_store ADD CONSTRAINT vector_store_collection_document_key UNIQUE (collection, document_id);
ALTER TABLE vectors.vector_store ADD COLUMN embedding_768 vector(768);
CREATE INDEX vector_store_embedding_768_hnsw ON vectors.vector_store USING hnsw (embedding_768 vector_cosine_ops);

-- AgentDB columns with no counterpart yet, so that nothing of a migrated file is lost.
ALTER TABLE memory.episodes ADD COLUMN created_at timestamptz;
ALTER TABLE memory.episodes ADD COLUMN embedding_model text;
ALTER TABLE memory.skills ADD COLUMN code text;
ALTER TABLE memory.skills ADD COLUMN embedding_model text;
ALTER TABLE memory.causal_edges ADD COLUMN experiment_ids text[];
ALTER TABLE memory.causal_edges ADD COLUMN confounder_score double precision;
ALTER TABLE memory.causal_edges ADD COLUMN last_validated_at timestamptz;
ALTER TABLE memory.causal_experiments ADD COLUMN created_at timestamptz;
