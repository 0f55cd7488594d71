-- What a rerun over unchanged inputs needs to know to do nothing, and to say why (the "skipping
-- unchanged work" section of docs/architecture.md).

-- tmdb_titles: which loader counted a batch, and the state raw was in right after the batch's rows
-- were last merged. A rerun of a file whose sha256, loader version and raw state all still match is
-- recorded against the batch without reading the file (action 'unchanged_file').
ALTER TABLE raw.tmdb_batches
    ADD COLUMN loader_version text,        -- lib/tmdb/unchanged.py LOADER_VERSION of the load it records
    ADD COLUMN raw_watermark  text,        -- fingerprint of raw.tmdb_titles and the day's rejects after it
    ADD COLUMN applied_at     timestamptz; -- when that fingerprint was taken: its load, release or rerun

-- dbt builds and GX validations that may be skipped: what each last successful one read (and, for a
-- build, wrote), as fingerprints, so a rerun can compare before doing the work again.
CREATE TABLE meta.build_watermarks (
    subject     text        NOT NULL,  -- 'dbt:model.gateway.stg_tmdb__titles', 'check:staged_titles_expectations'
    scope       text        NOT NULL DEFAULT '',  -- an incremental build's partition window, else ''
    watermark   jsonb       NOT NULL,  -- fingerprints of the inputs, the output and the code
    result      jsonb       NOT NULL DEFAULT '{}',  -- what it produced: row counts, a check's verdict
    run_id      text,                  -- the Dagster run that did the work
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, scope)
);
