"""The recommender: cold start, exclusions, the diversity rule, explanations, causal re-ranking."""

import math

import numpy as np
import pytest

from gateway_pipelines.lib.personalization.recommender import RecommenderConfig, RecommenderModel, UserState
from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue


@pytest.fixture(scope="module")
def catalogue():
    return synthetic_catalogue(600, seed=1)


@pytest.fixture(scope="module")
def model(catalogue):
    rng = np.random.default_rng(0)
    pairs = [(f"u{u}", int(i)) for u in range(80) for i in rng.choice(len(catalogue), 12, replace=False)]
    return RecommenderModel(catalogue, pairs)


def _state(catalogue, finished):
    v = catalogue.vectors[list(finished)].mean(axis=0)
    return UserState("me", v / np.linalg.norm(v), frozenset(finished))


def test_cold_start_gets_a_popular_diverse_list(model, catalogue):
    rec = model.recommend(UserState("nobody"), 20)
    assert rec.strategy == "cold_start" and len(rec.picks) == 20
    top_popular = set(model.pop_order[:100].tolist())
    assert all(p.item in top_popular for p in rec.picks)
    assert all("popular" in p.explanation for p in rec.picks)
    _assert_genre_cap(rec, model.config.max_genre_share)


def test_finished_titles_are_never_recommended(model, catalogue):
    finished = {int(i) for i in np.flatnonzero([g == catalogue.genres[0] for g in catalogue.genres])[:15]}
    rec = model.recommend(_state(catalogue, finished), 20)
    assert rec.strategy == "hybrid" and len(rec.picks) == 20
    assert not {p.item for p in rec.picks} & finished
    assert len({p.item for p in rec.picks}) == 20


def _assert_genre_cap(rec, share):
    cap = max(1, math.floor(share * len(rec.picks)))
    counts = {}
    for p in rec.picks:
        for g in p.genres:
            counts[g] = counts.get(g, 0) + 1
    assert max(counts.values()) <= cap, counts


def test_diversity_constraint_holds_for_a_one_genre_fan(catalogue, model):
    # a user who finished only titles of one cluster: unconstrained, the list would be that genre only
    first_genre = catalogue.genres[0][0]
    fan = {i for i, g in enumerate(catalogue.genres) if first_genre in g}
    finished = set(sorted(fan)[:10])
    rec = model.recommend(_state(catalogue, finished), 20)
    assert not rec.diversity_relaxed
    _assert_genre_cap(rec, model.config.max_genre_share)
    plain = RecommenderModel(catalogue, [], config=RecommenderConfig(mmr_lambda=1.0, max_genre_share=1.0))
    undiversified = plain.recommend(_state(catalogue, finished), 20)
    share = sum(first_genre in p.genres for p in undiversified.picks) / 20
    assert share > model.config.max_genre_share  # the rule did something


def test_every_pick_is_explained(catalogue, model):
    finished = set(range(0, 40, 4))
    rec = model.recommend(_state(catalogue, finished), 10)
    for p in rec.picks:
        assert "that you finished" in p.explanation and "genre" in p.explanation
        assert p.sources and set(p.sources) <= {"content", "co-occurrence"}
    assert any("viewers who also finished" in p.explanation for p in rec.picks)


def test_causal_weights_re_rank_and_are_named(catalogue):
    finished = set(range(0, 60, 6))
    base = RecommenderModel(catalogue, [])
    boosted = RecommenderModel(catalogue, [], causal_weights={"release_recency_score": 2.0, "not_a_feature": 9})
    assert boosted.causal_weights == {"release_recency_score": 2.0}
    a = base.recommend(_state(catalogue, finished), 10)
    b = boosted.recommend(_state(catalogue, finished), 10)
    recency = lambda rec: np.mean([p.features["release_recency_score"] for p in rec.picks])  # noqa: E731
    assert recency(b) > recency(a)
    assert any("causal weight of release_recency_score" in p.explanation for p in b.picks)


def test_k_is_validated_and_small_catalogues_return_what_exists(model):
    with pytest.raises(ValueError):
        model.recommend(UserState("x"), 0)
    small = RecommenderModel(synthetic_catalogue(8, seed=2), [])
    assert len(small.recommend(UserState("x"), 20).picks) == 8
