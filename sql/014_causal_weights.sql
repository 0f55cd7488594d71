-- Causal weights as the nightly DML asset writes them (docs/causal.md). One row per feature, segment,
-- method and run: the DML estimate (dml_plr, dml_irm), the naive OLS beside it (naive_ols), and the
-- refutations (refute_placebo, refute_random_common_cause). A cell that cannot be estimated (no
-- impressions that day, a feature constant in the segment, perfect separation, ...) is a row with
-- status 'not_estimable', its reason, and no number: never a fabricated one. Hence nullable numbers.
ALTER TABLE learning.causal_weights
    ALTER COLUMN effect DROP NOT NULL,
    ALTER COLUMN std_error DROP NOT NULL,
    ALTER COLUMN ci_low DROP NOT NULL,
    ALTER COLUMN ci_high DROP NOT NULL,
    ADD COLUMN status text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'not_estimable')),
    ADD COLUMN reason text,
    ADD COLUMN serve_date date,
    ADD CONSTRAINT causal_weights_number_or_reason CHECK (
        (status = 'ok' AND effect IS NOT NULL AND std_error IS NOT NULL AND ci_low IS NOT NULL
         AND ci_high IS NOT NULL)
        OR (status = 'not_estimable' AND effect IS NULL AND reason IS NOT NULL));

-- One row per run: the window it read and what became of every impression (read = used + skipped,
-- with the reasons), the refutations and, on simulated data, the coverage of the planted effects.
-- run_id = cw-<serve date>-<fingerprint of the sample and settings>: a rerun on the same data is the
-- same run and writes nothing.
CREATE TABLE learning.causal_runs (
    run_id        text        PRIMARY KEY,
    serve_date    date        NOT NULL,
    window_days   integer     NOT NULL CHECK (window_days > 0),
    impressions   integer     NOT NULL CHECK (impressions >= 0),
    used          integer     NOT NULL CHECK (used >= 0),
    skipped       jsonb       NOT NULL DEFAULT '{}',
    params        jsonb       NOT NULL DEFAULT '{}',
    refutations   jsonb       NOT NULL DEFAULT '{}',
    ground_truth  jsonb,
    dagster_run_id text,
    seconds       double precision,
    computed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX causal_runs_serve_date_idx ON learning.causal_runs (serve_date, computed_at);
