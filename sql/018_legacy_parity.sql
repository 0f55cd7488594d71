-- Legacy migration, faster parity checks (docs/migration.md, bench/migrate).
--
-- Each parity check compares the manifest with the staged rows once, into a narrow table of one
-- boolean per comparison and record, and Great Expectations validates that table: GX runs several
-- queries per expectation, and over the comparison query itself each of them recomputed every
-- checksum of 100k vectors and documents. Rows are per import and dropped with its staging.
CREATE TABLE migration_staging.row_parity (
    import_id      bigint  NOT NULL,
    collection     text    NOT NULL,
    source_id      text    NOT NULL,
    in_source      boolean NOT NULL,
    in_staging     boolean NOT NULL,
    document_equal boolean NOT NULL,
    metadata_equal boolean NOT NULL,
    PRIMARY KEY (import_id, collection, source_id)
);

CREATE TABLE migration_staging.vector_parity (
    import_id         bigint  NOT NULL,
    collection        text    NOT NULL,
    source_id         text    NOT NULL,
    has_vector        boolean NOT NULL,  -- the source record has a vector
    vector_equal      boolean NOT NULL,
    dim_equal         boolean NOT NULL,
    dim_of_collection boolean NOT NULL,
    PRIMARY KEY (import_id, collection, source_id)
);

-- Staged vectors inline in the row: pgvector's vectors are stored 'external', so every 768-d and
-- 1536-d vector lived in the TOAST table, and each of the k-NN check's 100 exact scans fetched
-- every one of them from there again. 'main' keeps them in the heap tuple (they fit in a page).
ALTER TABLE migration_staging.records ALTER COLUMN vec SET STORAGE MAIN;
