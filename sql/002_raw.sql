-- Raw TMDB content: one row per (media_type, id), the payload exactly as the source gave it
-- after validation. Movie and TV ids overlap on TMDB, so the key is the pair.
CREATE TABLE raw.tmdb_titles (
    id             integer     NOT NULL,
    media_type     text        NOT NULL CHECK (media_type IN ('movie', 'tv')),
    payload        jsonb       NOT NULL,
    content_hash   text        NOT NULL,
    source         text        NOT NULL,
    partition_date date        NOT NULL,
    fetched_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (media_type, id)
);
CREATE INDEX tmdb_titles_partition_idx ON raw.tmdb_titles (partition_date);

-- Quarantine: every record that failed validation, with the field and the reason.
CREATE TABLE raw.tmdb_rejects (
    reject_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text        NOT NULL,
    partition   text        NOT NULL,
    record      jsonb       NOT NULL,
    record_hash text        NOT NULL,
    field       text        NOT NULL,
    reason      text        NOT NULL,
    kind        text        NOT NULL DEFAULT 'invalid' CHECK (kind IN ('invalid', 'missing')),
    at          timestamptz NOT NULL DEFAULT now(),
    -- re-running a partition must not quarantine the same record twice
    UNIQUE (source, partition, record_hash, field)
);
CREATE INDEX tmdb_rejects_partition_idx ON raw.tmdb_rejects (source, partition);

CREATE TABLE raw.tmdb_genres (
    media_type text    NOT NULL CHECK (media_type IN ('movie', 'tv')),
    genre_id   integer NOT NULL,
    name       text    NOT NULL,
    PRIMARY KEY (media_type, genre_id)
);

-- Watch events from the landing folder (one row per event; event_id comes from the file).
CREATE TABLE raw.watch_events (
    event_id         text        PRIMARY KEY,
    user_id          text        NOT NULL,
    content_id       text        NOT NULL,
    event_type       text        NOT NULL,
    watch_completion double precision,
    device_type      text,
    occurred_at      timestamptz NOT NULL,
    source_file      text        NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX watch_events_user_idx ON raw.watch_events (user_id, occurred_at);
