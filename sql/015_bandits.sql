-- Strategy bandits (docs/bandits.md): Beta posteriors per context x recommendation strategy, learned
-- from the logged impressions and outcomes, and the simulated strategy log's planted truth.

-- The probability with which the serving policy chose the impression's strategy: what off-policy
-- evaluation divides by. NULL when the strategy was not chosen at random (the hybrid default).
ALTER TABLE learning.impressions
    ADD COLUMN propensity double precision CHECK (propensity > 0 AND propensity <= 1);

-- One version per partition day: the state from every logged impression served before the day's end.
-- Versioned (not replaced) so a backfill reproduces any past day's state and the recommender reads the
-- newest; a rerun of a day replaces that day's rows in one transaction, and only when state_hash differs.
CREATE TABLE learning.bandit_arms (
    as_of       date             NOT NULL,
    context     text             NOT NULL,  -- device|daypart|user_type, e.g. tv|evening|returning
    arm         text             NOT NULL,  -- content_similarity, popularity, causal_rerank, diversity_heavy
    alpha       double precision NOT NULL CHECK (alpha > 0),
    beta        double precision NOT NULL CHECK (beta > 0),
    n           integer          NOT NULL CHECK (n >= 0),
    mean        double precision NOT NULL CHECK (mean BETWEEN 0 AND 1),
    p_best      double precision NOT NULL CHECK (p_best BETWEEN 0 AND 1),  -- Thompson P(arm is best in context)
    state_hash  text             NOT NULL,  -- of the whole day's state: equal hashes, identical rows
    run_id      text             NOT NULL,  -- the Dagster run that wrote the version
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of, context, arm)
);
CREATE INDEX bandit_arms_as_of_idx ON learning.bandit_arms (as_of);

-- Simulated strategy logs (lib/personalization/simulator.py, simulate_strategy_log): one row per run;
-- the same run with the same data is written once.
CREATE TABLE learning.bandit_simulations (
    run_id        text        PRIMARY KEY,
    seed          integer     NOT NULL,
    n_users       integer     NOT NULL,
    n_days        integer     NOT NULL,
    end_date      date        NOT NULL,
    n_impressions integer     NOT NULL,
    data_hash     text        NOT NULL,
    params        jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The planted expected reward per impression of each strategy in each context, and the logging policy.
CREATE TABLE learning.bandit_truth (
    run_id             text             NOT NULL REFERENCES learning.bandit_simulations (run_id) ON DELETE CASCADE,
    context            text             NOT NULL,
    arm                text             NOT NULL,
    true_value         double precision NOT NULL,
    logging_propensity double precision NOT NULL,
    PRIMARY KEY (run_id, context, arm)
);
