-- Nightly learning over agent episodes: skill consolidation and the causal-edge learner.
-- Columns that 009 (legacy migration) adds are used, not re-added: memory.episodes.embedding_model,
-- memory.skills.embedding_model, memory.causal_edges.experiment_ids / last_validated_at. See docs/learning.md.

-- Episodes: a natural key for idempotent loads (generated sets, JSONL lines), and the window scan.
ALTER TABLE memory.episodes ADD COLUMN source_key text;
CREATE UNIQUE INDEX episodes_source_key_uq ON memory.episodes (source_key);
CREATE INDEX episodes_ts_idx ON memory.episodes (ts);

-- JSONL files dropped into landing/episodes: one row per file, the counts add up
-- (lines_read = loaded + quarantined + duplicates), and the quarantined lines with their reason.
CREATE TABLE memory.episode_files (
    file_sha256  text        PRIMARY KEY,
    file_name    text        NOT NULL,
    path         text        NOT NULL,
    lines_read   integer     NOT NULL,
    loaded       integer     NOT NULL,
    quarantined  integer     NOT NULL,
    duplicates   integer     NOT NULL,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (lines_read = loaded + quarantined + duplicates)
);
CREATE TABLE memory.episode_rejects (
    file_sha256 text        NOT NULL,
    line_no     integer     NOT NULL,
    file_name   text        NOT NULL,
    reason      text        NOT NULL,
    raw_line    text,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_sha256, line_no)
);

-- Generated episode sets and their ground truth (families, success rates, planted effects).
CREATE TABLE memory.generated_sets (
    set_id      text        PRIMARY KEY,
    seed        integer     NOT NULL,
    params      jsonb       NOT NULL,
    truth       jsonb       NOT NULL,
    n_episodes  integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One vector per distinct task text and model (the platform's provider fitted on episode tasks).
CREATE TABLE memory.task_embeddings (
    model_id    text        NOT NULL,
    task_hash   text        NOT NULL,
    task        text        NOT NULL,
    embedding   vector(384) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, task_hash)
);

-- Which skill each distinct task belongs to (written by consolidation, read by the learner).
CREATE TABLE memory.skill_tasks (
    task_hash   text        PRIMARY KEY,
    task        text        NOT NULL,
    skill_id    bigint      NOT NULL REFERENCES memory.skills (id) ON DELETE CASCADE,
    model_id    text        NOT NULL
);
CREATE INDEX skill_tasks_skill_idx ON memory.skill_tasks (skill_id);

-- Skills are archived by the prune rule, never deleted.
ALTER TABLE memory.skills ADD COLUMN archived_at timestamptz;
ALTER TABLE memory.skills ADD COLUMN archive_reason text;

-- Consolidation runs: what each run did.
ALTER TABLE memory.consolidation_runs ADD COLUMN partition_key text;
ALTER TABLE memory.consolidation_runs ADD COLUMN skills_created integer NOT NULL DEFAULT 0;
ALTER TABLE memory.consolidation_runs ADD COLUMN skills_updated integer NOT NULL DEFAULT 0;
ALTER TABLE memory.consolidation_runs ADD COLUMN skills_archived integer NOT NULL DEFAULT 0;
ALTER TABLE memory.consolidation_runs ADD COLUMN duration_ms double precision;

-- Causal edges: the AIPW test behind each edge.
ALTER TABLE memory.causal_edges ADD COLUMN verdict text;
ALTER TABLE memory.causal_edges ADD COLUMN p_value double precision;
ALTER TABLE memory.causal_edges ADD COLUMN std_error double precision;

-- Experiments record each episode once.
CREATE UNIQUE INDEX causal_observations_experiment_episode_uq
    ON memory.causal_observations (experiment_id, episode_id);

-- Watermarks of the incremental steps (causal learner, consolidation) and their state.
CREATE TABLE memory.learner_state (
    name        text        PRIMARY KEY,
    watermark   bigint      NOT NULL DEFAULT 0,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Failed runs of the learning jobs, recorded by the run-failure sensor.
CREATE TABLE memory.learning_run_failures (
    run_id      text        PRIMARY KEY,
    job_name    text        NOT NULL,
    partition_key text,
    error       text,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
