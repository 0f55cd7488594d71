-- Personalization: watch events in, preference vectors, served lists, simulation truth, evaluations.

-- raw.watch_events (sql/002_raw.sql) was declared early and never written: it takes the event shape
-- of the landing files here. One row per distinct event. event_id = sha256(source, user_id,
-- content_key, event_type, ts): the same event twice (in one file or across files) is a duplicate,
-- and a re-ingest changes nothing. (The new NOT NULL columns need the table empty, which it is:
-- nothing wrote it before this migration.)
ALTER TABLE raw.watch_events RENAME COLUMN content_id TO content_key;
ALTER TABLE raw.watch_events RENAME COLUMN watch_completion TO completion;
ALTER TABLE raw.watch_events RENAME COLUMN device_type TO device;
ALTER TABLE raw.watch_events RENAME COLUMN occurred_at TO ts;
ALTER TABLE raw.watch_events RENAME COLUMN source_file TO file_name;
ALTER TABLE raw.watch_events RENAME COLUMN loaded_at TO ingested_at;
ALTER TABLE raw.watch_events
    ADD COLUMN source           text             NOT NULL,  -- 'simulator', 'movielens:<dataset>', 'events:<file>'
    ADD COLUMN rating           double precision CHECK (rating BETWEEN 0 AND 10),
    ADD COLUMN duration_s       double precision CHECK (duration_s >= 0),
    ADD COLUMN total_duration_s double precision CHECK (total_duration_s >= 0),
    ADD COLUMN is_rewatch       boolean          NOT NULL DEFAULT false,
    ADD COLUMN event_date       date             NOT NULL,  -- the daily partition (UTC date of ts)
    ADD COLUMN impression_id    text,                       -- the served impression the event answers
    ADD COLUMN file_sha256      text             NOT NULL,
    ADD COLUMN line_no          integer          NOT NULL,
    ADD CONSTRAINT watch_events_event_type_check CHECK (event_type IN
        ('impression', 'click', 'play', 'progress', 'complete', 'rate', 'dismiss')),
    ADD CONSTRAINT watch_events_completion_check CHECK (completion BETWEEN 0 AND 1);
CREATE INDEX watch_events_date_idx ON raw.watch_events (event_date);
CREATE INDEX watch_events_ingested_idx ON raw.watch_events (ingested_at);

-- Lines that could not be loaded, each with its file, line and reason (one row per file line).
CREATE TABLE raw.watch_event_rejects (
    file_sha256 text        NOT NULL,
    line_no     integer     NOT NULL,
    file_name   text        NOT NULL,
    source      text        NOT NULL,
    reason      text        NOT NULL,
    raw_line    text,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_sha256, line_no)
);
CREATE INDEX watch_event_rejects_reason_idx ON raw.watch_event_rejects (reason);

-- The ledger of event files: one row per file content (sha256), with the figures of its last ingest.
CREATE TABLE raw.event_files (
    file_sha256       text        PRIMARY KEY,
    file_name         text        NOT NULL,
    path              text        NOT NULL,
    format            text        NOT NULL CHECK (format IN ('jsonl', 'movielens')),
    source            text        NOT NULL,
    lines_read        integer     NOT NULL,
    loaded            integer     NOT NULL,
    quarantined       integer     NOT NULL,
    duplicates        integer     NOT NULL,
    not_in_catalogue  integer     NOT NULL DEFAULT 0,
    min_ts            timestamptz,
    max_ts            timestamptz,
    ingest_count      integer     NOT NULL DEFAULT 1,
    first_ingested_at timestamptz NOT NULL DEFAULT now(),
    last_ingested_at  timestamptz NOT NULL DEFAULT now()
);

-- Preference vectors: what they were computed from, so a rebuild touches only users with new events.
ALTER TABLE vectors.user_preference_vectors
    ADD COLUMN event_count      integer     NOT NULL DEFAULT 0,
    ADD COLUMN events_watermark timestamptz,
    ADD COLUMN last_event_at    timestamptz,
    ADD COLUMN rule             text        NOT NULL DEFAULT 'ema';

-- Served lists: which run, source and strategy served them, and the confounder the causal job needs.
ALTER TABLE learning.impressions
    ADD COLUMN run_id     text,
    ADD COLUMN source     text,
    ADD COLUMN strategy   text,
    ADD COLUMN popularity double precision,
    ADD COLUMN similarity double precision,
    ADD COLUMN session_id text;
CREATE INDEX impressions_run_idx ON learning.impressions (run_id);

-- One row per simulation: its parameters and what it wrote.
CREATE TABLE learning.simulation_runs (
    run_id        text        PRIMARY KEY,
    seed          integer     NOT NULL,
    n_users       integer     NOT NULL,
    n_days        integer     NOT NULL,
    end_date      date        NOT NULL,
    n_impressions integer     NOT NULL,
    n_events      integer     NOT NULL,
    data_hash     text        NOT NULL,
    params        jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The planted effects of each simulation, globally (segment 'all') and per segment.
CREATE TABLE learning.simulation_truth (
    run_id      text        NOT NULL REFERENCES learning.simulation_runs (run_id) ON DELETE CASCADE,
    feature     text        NOT NULL,
    segment     text        NOT NULL,
    true_effect double precision NOT NULL,
    description text        NOT NULL,
    PRIMARY KEY (run_id, feature, segment)
);

-- Offline evaluations: one row per (run, event source, method, metric, k).
CREATE TABLE learning.offline_evaluations (
    run_id      text        NOT NULL,
    source      text        NOT NULL,
    method      text        NOT NULL,
    metric      text        NOT NULL,
    k           integer     NOT NULL,
    value       double precision NOT NULL,
    n_users     integer     NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, source, method, metric, k)
);
CREATE INDEX offline_evaluations_latest_idx ON learning.offline_evaluations (source, method, computed_at DESC);
