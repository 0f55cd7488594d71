-- The embedding cache: one hybrid vector per title, keyed by the hash of everything that went
-- into it (input text, block features, model, block weights). content_vectors serves from it.
CREATE TABLE vectors.content_embeddings (
    content_key     text        PRIMARY KEY,
    vector          vector(768) NOT NULL,
    embedding_model text        NOT NULL,
    embedding_hash  text        NOT NULL,
    embedded_at     timestamptz NOT NULL DEFAULT now()
);
