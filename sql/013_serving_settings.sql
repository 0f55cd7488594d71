-- The serving settings the platform chose itself, with the evidence: today the ef_search the recall
-- check raised (within its latency budget) so that search meets its recall target. Search reads it.
CREATE TABLE meta.serving_settings (
    table_name  text        NOT NULL,
    setting     text        NOT NULL,
    value       integer     NOT NULL,
    configured  integer     NOT NULL,
    recall      double precision,
    p99_ms      double precision,
    reason      text        NOT NULL,
    chosen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, setting)
);
