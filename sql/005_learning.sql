-- What was served (with the feature values at serve time) and what happened next.
CREATE TABLE learning.impressions (
    impression_id         text        PRIMARY KEY,
    user_id               text        NOT NULL,
    content_id            text        NOT NULL,
    rank                  integer     NOT NULL,
    served_at             timestamptz NOT NULL,
    genre_match_score     double precision,
    platform_availability double precision,
    release_recency_score double precision,
    rating_alignment      double precision,
    time_of_day           double precision,
    device_type           text,
    recommendation_rank   integer,
    content_duration      double precision,
    user_session_length   double precision,
    features              jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX impressions_user_idx ON learning.impressions (user_id, served_at);

CREATE TABLE learning.outcomes (
    impression_id    text        PRIMARY KEY REFERENCES learning.impressions (impression_id) ON DELETE CASCADE,
    clicked          boolean     NOT NULL DEFAULT false,
    watch_completion double precision CHECK (watch_completion BETWEEN 0 AND 1),
    rating           double precision,
    observed_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE learning.causal_weights (
    feature     text        NOT NULL,
    segment     text        NOT NULL DEFAULT 'all',
    effect      double precision NOT NULL,
    std_error   double precision NOT NULL,
    ci_low      double precision NOT NULL,
    ci_high     double precision NOT NULL,
    n           integer     NOT NULL,
    method      text        NOT NULL,
    run_id      text        NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feature, segment, method, run_id)
);
CREATE INDEX causal_weights_latest_idx ON learning.causal_weights (feature, segment, computed_at DESC);
