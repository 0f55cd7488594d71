-- Hybrid 768-d content vectors: plot 0-512, genre 512-576, mood 576-640, metadata 640-768.
CREATE TABLE vectors.content_vectors (
    id              text        PRIMARY KEY,          -- 'movie-603', 'tv-1399'
    vector          vector(768) NOT NULL,
    content_id      integer     NOT NULL,
    media_type      text        NOT NULL CHECK (media_type IN ('movie', 'tv')),
    title           text        NOT NULL,
    genre_ids       integer[]   NOT NULL DEFAULT '{}',
    year            integer,
    vote_average    double precision,
    original_language text,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    embedding_model text        NOT NULL,
    content_hash    text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX content_vectors_vector_hnsw ON vectors.content_vectors
    USING hnsw (vector vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX content_vectors_metadata_gin ON vectors.content_vectors USING gin (metadata);
CREATE INDEX content_vectors_genres_gin ON vectors.content_vectors USING gin (genre_ids);
CREATE INDEX content_vectors_filter_idx ON vectors.content_vectors (media_type, year, vote_average);

CREATE TABLE vectors.user_preference_vectors (
    user_id          text        PRIMARY KEY,
    vector           vector(768) NOT NULL,
    confidence       double precision NOT NULL DEFAULT 0 CHECK (confidence BETWEEN 0 AND 1),
    genre_affinities jsonb       NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_preference_vectors_hnsw ON vectors.user_preference_vectors
    USING hnsw (vector vector_cosine_ops) WITH (m = 16, ef_construction = 64);

CREATE TABLE vectors.vector_search_logs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    query_vector vector(768),
    query_text   text,
    filters      jsonb       NOT NULL DEFAULT '{}',
    result_ids   text[]      NOT NULL,
    user_id      text,
    search_type  text        NOT NULL,
    latency_ms   double precision,
    "timestamp"  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vector_search_logs_ts_idx ON vectors.vector_search_logs ("timestamp");

-- The unified store that legacy ChromaDB collections (journal, mirage, visor, convergence) move into.
CREATE TABLE vectors.vector_store (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection     text        NOT NULL,
    document_id    text        NOT NULL UNIQUE,
    user_id        text,
    content        text,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    embedding      vector(384),
    embedding_1536 vector(1536),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vector_store_collection_idx ON vectors.vector_store (collection);
CREATE INDEX vector_store_embedding_hnsw ON vectors.vector_store
    USING hnsw (embedding vector_cosine_ops);
CREATE INDEX vector_store_metadata_gin ON vectors.vector_store USING gin (metadata);

-- Every HNSW build: the drift sensor compares the table with its last build.
CREATE TABLE meta.index_builds (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name       text        NOT NULL,
    index_name       text        NOT NULL,
    rows_indexed     bigint      NOT NULL,
    m                integer     NOT NULL,
    ef_construction  integer     NOT NULL,
    parallel_workers integer     NOT NULL,
    duration_s       double precision NOT NULL,
    built_at         timestamptz NOT NULL DEFAULT now()
);
