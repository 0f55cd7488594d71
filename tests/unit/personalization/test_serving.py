"""The served model is kept between calls and read again when the warehouse's version of it changes;
the user's state is read on every call and equals what `store.user_state` reads."""

import time

import numpy as np
import psycopg

from gateway_pipelines.lib.personalization.recommender import RecommenderConfig
from gateway_pipelines.lib.personalization.serving import ModelCache
from gateway_pipelines.lib.personalization.store import log_impressions, user_state
from gateway_pipelines.lib.personalization.synthetic import insert_catalogue, synthetic_catalogue
from gateway_pipelines.lib.warehouse import connect


def _build_fct(conn, rows) -> None:
    """A new relation each time, as dbt's table build makes one."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    conn.execute("DROP TABLE IF EXISTS analytics.fct_watch_events")
    conn.execute("CREATE TABLE analytics.fct_watch_events (user_id text, content_key text, is_finished boolean, "
                 "rating float8, event_type text, source text, ingested_at timestamptz DEFAULT now())")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO analytics.fct_watch_events (user_id, content_key, is_finished, rating, "
                        "event_type) VALUES (%s, %s, %s, %s, %s)", rows)
    conn.commit()


def _writes(conn) -> int:
    row = conn.execute("SELECT pg_stat_clear_snapshot(), n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables "
                       "WHERE relid = 'vectors.content_vectors'::regclass").fetchone()
    conn.commit()
    return int(row[1])


def _same_state(a, b) -> None:
    assert (a.user_id, a.finished, a.genre_affinities, a.mean_rating) == (b.user_id, b.finished, b.genre_affinities,
                                                                            b.mean_rating)
    assert (a.vector is None) == (b.vector is None)
    if a.vector is not None:
        np.testing.assert_array_equal(a.vector, b.vector)


def test_the_model_is_reused_until_its_version_changes(conn, fresh_db):
    catalogue = synthetic_catalogue(120, seed=3)
    with connect(fresh_db) as writer:  # the sync's session, not ours: its counters are published at exit
        insert_catalogue(writer, catalogue)
    # wait until the insert is counted, so that only the changes below move the version
    deadline = time.monotonic() + 10
    while _writes(conn) < len(catalogue) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _writes(conn) == len(catalogue)
    keys = catalogue.keys
    cache, config = ModelCache(), RecommenderConfig()

    served, state, built = cache.serve(conn, "u1", config)
    assert built and state.cold and served.model.cooc.nnz == 0
    served, _, built = cache.serve(conn, "u1", config)
    assert not built and cache.builds == 1

    # dbt builds the events table (a new relation): co-occurrence is read again, the state has the events
    _build_fct(conn, [("u1", keys[0], True, 8.0, "rate"), ("u1", keys[1], True, None, "complete"),
                      ("u1", keys[2], False, None, "play"), ("u2", keys[0], True, None, "complete"),
                      ("u2", keys[5], True, None, "complete")])
    served, state, built = cache.serve(conn, "u1", config)
    assert built and served.model.cooc.nnz > 0
    _same_state(state, user_state(conn, "u1", served.catalogue))
    index = served.catalogue.index
    assert state.finished == {index[keys[0]], index[keys[1]]} and state.mean_rating == 8.0

    # a new preference vector is user state: read on the next call, no rebuild
    vector = catalogue.vectors[2]
    conn.execute("INSERT INTO vectors.user_preference_vectors (user_id, vector, confidence, genre_affinities) "
                 "VALUES ('u1', %s, 0.3, '{\"28\": 0.7}')", (vector,))
    conn.commit()
    served, state, built = cache.serve(conn, "u1", config)
    assert not built and state.genre_affinities == {28: 0.7}
    _same_state(state, user_state(conn, "u1", served.catalogue))
    rec = served.model.recommend(state, 5)
    assert rec.strategy == "hybrid" and not {p.key for p in rec.picks} & {keys[0], keys[1]}
    log_impressions(conn, rec)
    conn.commit()
    logged = conn.execute(
        "SELECT content_id, rank, recommendation_rank, genre_match_score, release_recency_score, rating_alignment, "
        "content_duration, popularity, similarity, strategy, source, features->>'explanation', "
        "(features->>'score')::float8 FROM learning.impressions WHERE user_id = 'u1' ORDER BY rank").fetchall()
    assert logged == [(p.key, p.rank, p.rank, p.features.get("genre_match_score"),
                       p.features.get("release_recency_score"), p.features.get("rating_alignment"),
                       p.features.get("content_duration"), p.popularity, p.similarity, "hybrid", "recommend",
                       p.explanation, round(p.score, 6)) for p in rec.picks]
    served, _, built = cache.serve(conn, "u1", config)
    assert not built  # logging a served list changes nothing the model is built from

    # a new causal-weights run
    conn.execute("INSERT INTO learning.causal_weights (feature, segment, effect, std_error, ci_low, ci_high, n, "
                 "method, run_id, serve_date, status) VALUES ('release_recency_score', 'all', 0.1, 0.01, 0.08, "
                 "0.12, 100, 'dml_plr', 'run-1', current_date, 'ok')")
    conn.commit()
    served, _, built = cache.serve(conn, "u1", config)
    assert built and served.model.causal_weights == {"release_recency_score": 0.1}

    # an in-place sync (another session rewrites a row): seen once Postgres publishes its counters
    with psycopg.connect(fresh_db) as writer:
        writer.execute("UPDATE vectors.content_vectors SET title = 'Renamed' WHERE id = %s", (keys[7],))
    deadline, built = time.monotonic() + 10, False
    while not built and time.monotonic() < deadline:
        time.sleep(0.2)
        served, _, built = cache.serve(conn, "u1", config)
    assert built and served.catalogue.titles[served.catalogue.index[keys[7]]] == "Renamed"

    # another config scores with the same catalogue and counts, not a copy
    other = RecommenderConfig(n_candidates=50)
    again, _, built = cache.serve(conn, "u1", other)
    assert not built and again.model.config == other and again.model.catalogue is served.catalogue
    assert again.model.cooc is served.model.cooc
