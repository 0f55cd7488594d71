-- The ledger of tmdb_titles loads: one row per batch (a partition's file, or a source's content
-- for that day), saying where every record it read went. A batch whose reject ratio fails the gate
-- is held: its valid rows wait in raw.tmdb_held_titles instead of reaching raw.tmdb_titles (and
-- dbt), until an operator accepts or releases it.
CREATE TABLE raw.tmdb_batches (
    batch_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partition_date   date        NOT NULL,
    source           text        NOT NULL,
    file_name        text,                   -- csv_dump / export only
    file_sha256      text,                   -- csv_dump / export only
    content_sha256   text        NOT NULL,   -- what was staged and rejected, in read order
    -- what makes a rerun the same batch: the file's checksum, else the content's
    batch_key        text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('loaded', 'held', 'released')),
    records_read     integer     NOT NULL,   -- delivered by the source + ids TMDB answered 404 for
    inserted         integer     NOT NULL,
    updated          integer     NOT NULL,
    unchanged        integer     NOT NULL,
    loaded           integer     GENERATED ALWAYS AS (inserted + updated + unchanged) STORED,
    held             integer     NOT NULL,   -- rows now in raw.tmdb_held_titles
    quarantined      integer     NOT NULL,   -- invalid records, in raw.tmdb_rejects
    skipped_missing  integer     NOT NULL,   -- TMDB 404s: deleted titles, nothing to load
    duplicates       integer     NOT NULL,   -- earlier copies of a title in the same batch
    reject_ratio     double precision NOT NULL,
    max_reject_ratio double precision NOT NULL,
    accepted_rejects boolean     NOT NULL DEFAULT false,  -- an operator let it through over the limit
    reject_reasons   jsonb       NOT NULL DEFAULT '[]',   -- top [{field, reason, count}]
    reject_examples  jsonb       NOT NULL DEFAULT '[]',   -- a few [{field, reason, record}], truncated
    run_id           text,
    released_run_id  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    released_at      timestamptz,
    -- a rerun of the same file (or content) for the same day is the same batch, never a second copy
    UNIQUE (partition_date, source, batch_key),
    CONSTRAINT tmdb_batches_counts_add_up CHECK (
        records_read = inserted + updated + unchanged + held + quarantined + skipped_missing + duplicates
    ),
    CONSTRAINT tmdb_batches_counts_not_negative CHECK (
        least(records_read, inserted, updated, unchanged, held, quarantined, skipped_missing, duplicates) >= 0
    ),
    CONSTRAINT tmdb_batches_only_held_hold CHECK (status = 'held' OR held = 0),
    CONSTRAINT tmdb_batches_release_is_stamped CHECK ((status = 'released') = (released_at IS NOT NULL))
);
CREATE INDEX tmdb_batches_status_idx ON raw.tmdb_batches (status, partition_date);

-- The valid rows of held batches, exactly as they would have been merged into raw.tmdb_titles.
-- Released rows move to raw.tmdb_titles and leave this table.
CREATE TABLE raw.tmdb_held_titles (
    batch_id     bigint      NOT NULL REFERENCES raw.tmdb_batches (batch_id),
    id           integer     NOT NULL,
    media_type   text        NOT NULL CHECK (media_type IN ('movie', 'tv')),
    payload      jsonb       NOT NULL,
    content_hash text        NOT NULL,
    held_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, media_type, id)
);
