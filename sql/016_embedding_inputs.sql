-- What content_embeddings last hashed, per title: a digest of the dim_content columns a vector
-- reads (computed in SQL) and the embedding hash Python gave them under one hash context
-- (model id, block weights, hash and digest versions). A title whose digest, context and stored
-- vector hash all still match is unchanged without being read into Python, so a rerun over an
-- unchanged catalogue costs one join. The table only ever skips work: a missing or stale row
-- means the title is hashed again, so it can be truncated at any time.
CREATE TABLE vectors.content_embedding_inputs (
    content_key    text        PRIMARY KEY,
    input_digest   uuid        NOT NULL,
    hash_context   text        NOT NULL,
    embedding_hash text        NOT NULL,
    hashed_at      timestamptz NOT NULL DEFAULT now()
);
