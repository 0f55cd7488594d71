-- The causal-edge learner keeps its evidence per batch of sessions, so that an episode arriving late
-- into a session that a batch already counted re-opens that batch's pairs (recomputed from source)
-- instead of being added on top; an edge is the sum of its cells. See docs/learning.md.

-- Which batch counted each session: the learner run that first saw it (batch_id = that run's
-- episode watermark). A session stays in its batch for good.
CREATE TABLE memory.learner_sessions (
    session_id  text        PRIMARY KEY,
    batch_id    bigint      NOT NULL,
    counted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX learner_sessions_batch_idx ON memory.learner_sessions (batch_id);

-- The AIPW sufficient statistics of one pair of skills within one batch (cross-fitted on that batch).
CREATE TABLE memory.causal_edge_cells (
    batch_id      bigint      NOT NULL,
    from_skill_id bigint      NOT NULL,
    to_skill_id   bigint      NOT NULL,
    stats         jsonb       NOT NULL,
    episode_pairs bigint      NOT NULL DEFAULT 0,
    evidence_ids  bigint[]    NOT NULL DEFAULT '{}',
    covariates    text[]      NOT NULL DEFAULT '{}',
    validated_at  timestamptz NOT NULL,
    PRIMARY KEY (batch_id, from_skill_id, to_skill_id)
);
CREATE INDEX causal_edge_cells_pair_idx ON memory.causal_edge_cells (from_skill_id, to_skill_id);
