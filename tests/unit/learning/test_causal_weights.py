"""DML causal weights against the simulator's planted effects, and every kind of bad input as a recorded
"not estimable" outcome (never a crash, never a number)."""

import json
from datetime import date

import numpy as np
import pytest

from gateway_pipelines.lib.learning.causal_weights import (
    METHOD_IRM,
    METHOD_NAIVE,
    METHOD_PLACEBO,
    METHOD_RCC,
    CausalParams,
    PreparedSample,
    dml_estimate,
    estimate_all,
    forest_plot_png,
    prepare_sample,
    score_against_truth,
    solve_score,
)
from gateway_pipelines.lib.personalization.simulator import FEATURES, SimulationParams, simulate
from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue

GLOBAL = CausalParams(segments=("all",))


@pytest.fixture(scope="module")
def catalogue():
    return synthetic_catalogue(500, seed=3)


def _rows(sim):
    return sim.impressions.merge(sim.outcomes, on="impression_id", how="left")


def _truth(sim):
    return {(f, s): v for f, s, v, _ in sim.truth}


@pytest.fixture(scope="module")
def sim(catalogue):
    return simulate(catalogue, SimulationParams(150, 14, 5, date(2026, 11, 30)))


@pytest.fixture(scope="module")
def sample(sim):
    return prepare_sample(_rows(sim))


@pytest.fixture(scope="module")
def result(sample):
    return estimate_all(sample, GLOBAL)


def test_the_sample_is_the_clicked_impressions_and_every_other_row_has_a_reason(sim, sample):
    clicked = int(sim.outcomes["clicked"].sum())
    assert sample.used == clicked and sample.read == len(sim.impressions)
    assert sample.skipped == {"not clicked: no completion observed": len(sim.impressions) - clicked}
    assert sample.adds_up and sample.runs == {sim.run_id: clicked}
    assert sample.fingerprint() == prepare_sample(_rows(sim)).fingerprint()  # reruns are the same run


def test_dml_recovers_the_planted_effects_and_the_naive_rank_estimate_is_biased(sim, result):
    truth = _truth(sim)
    dml = {e.feature: e for e in result.dml()}
    assert set(dml) == set(FEATURES) and all(e.ok for e in dml.values())
    assert dml["platform_availability"].method == METHOD_IRM and dml["device_type"].method == METHOD_IRM
    covered = [f for f in FEATURES if dml[f].covers(truth[(f, "all")])]
    assert len(covered) >= 8, {f: (dml[f].effect, truth[(f, 'all')]) for f in FEATURES}
    rank, naive = dml["recommendation_rank"], result.get("recommendation_rank", "all", METHOD_NAIVE)
    assert rank.covers(-0.008)
    assert naive.ci_high < -0.008 and not naive.covers(-0.008)  # confounded: biased outside its own interval
    assert abs(naive.effect + 0.008) > 5 * abs(rank.effect + 0.008)
    score = score_against_truth(result, truth)
    assert score["rank_dml_covers"] and not score["rank_naive_covers"] and score["intervals"] == 9


def test_refutations_placebo_covers_zero_and_a_random_common_cause_moves_nothing(result):
    refs = result.refutations
    assert refs["placebo_covers_zero"] and refs["random_common_cause_stable"]
    assert set(refs["random_common_cause_shift_se"]) == set(FEATURES)
    placebo = [e for e in result.estimates if e.method == METHOD_PLACEBO]
    assert len(placebo) == 1 and placebo[0].feature == "placebo:genre_match_score"
    assert len([e for e in result.estimates if e.method == METHOD_RCC]) == 9


def test_a_permuted_feature_is_a_null_and_is_found_to_be_one(sample, result):
    # a placebo that cannot pass by construction would be no test: the real feature is far from 0
    frame = sample.frame
    real = result.get("genre_match_score")
    assert real.ci_low > 0.05
    fake = dml_estimate(frame, "genre_match_score", "all", GLOBAL,
                        treatment=np.random.default_rng(1).permutation(frame["genre_match_score"].to_numpy()))
    assert fake.ci_low <= 0 <= fake.ci_high


@pytest.mark.parametrize("segment_fit", ["pooled", "per_segment"])
def test_segment_effects_follow_the_planted_heterogeneity(sample, segment_fit):
    # one seed: within 3 standard errors of the planted slope (the coverage of every segment's 95 % interval
    # is scored over seeds in test_coverage_of_the_planted_effects_over_seeds and bench/causal/coverage.py)
    params = CausalParams(segments=("device=tv", "device=mobile"), segment_fit=segment_fit)
    out = estimate_all(sample, params, features=("genre_match_score",))
    tv, mobile = out.get("genre_match_score", "device=tv"), out.get("genre_match_score", "device=mobile")
    assert abs(tv.effect - 0.20) < 3 * tv.std_error and abs(mobile.effect - 0.10) < 3 * mobile.std_error
    assert tv.ci_low > mobile.ci_high  # the TV slope is steeper, and the intervals say so
    assert tv.n + mobile.n < sample.used


def test_a_segment_effect_is_the_score_over_its_rows_as_doublemls_own_coefficient_and_gate(sample, result):
    """The pooled estimate's final stage: over every row it is DoubleML's coefficient and standard error;
    over a segment's rows it is DoubleML's group average effect (gate) from the same fit."""
    import pandas as pd

    from gateway_pipelines.lib.learning.causal_weights import BINARY, _fit, segment_mask

    frame = sample.frame.head(1500)  # identities of arithmetic: a small frame does, and is quicker
    masks = {s: segment_mask(frame, s) for s in ("device=tv", "device=mobile", "device=web")}
    for feature in ("genre_match_score", "platform_availability"):
        model = _fit(frame, feature, frame[feature].to_numpy(float), feature in BINARY, GLOBAL, f"{feature}|all")
        psi_a, psi_b = model.psi_elements["psi_a"][:, :, 0], model.psi_elements["psi_b"][:, :, 0]
        assert solve_score(psi_a, psi_b) == pytest.approx((model.coef[0], model.se[0]), rel=1e-10)
        gate = model.gate(pd.DataFrame(masks)).confint(level=0.95)
        for s, mask in masks.items():
            effect, se = solve_score(psi_a[mask], psi_b[mask])
            assert effect == pytest.approx(gate.loc[s, "effect"], rel=1e-8)
            assert effect - 1.959964 * se == pytest.approx(gate.loc[s, "2.5 %"], rel=1e-4, abs=1e-7)
            assert effect + 1.959964 * se == pytest.approx(gate.loc[s, "97.5 %"], rel=1e-4, abs=1e-7)
    # repeated cross-fitting: the median over repetitions, and the first repetition is the single fit's;
    # estimate_all's pooled fit of segment all is that single fit (the same folds, the same numbers)
    frame = sample.frame
    twice = _fit(frame, "rating_alignment", frame["rating_alignment"].to_numpy(float), False,
                 CausalParams(segments=("all",), n_rep=2), "rating_alignment|all")
    once = result.get("rating_alignment")
    psi_a, psi_b = twice.psi_elements["psi_a"][:, :, 0], twice.psi_elements["psi_b"][:, :, 0]
    assert solve_score(psi_a[:, :1], psi_b[:, :1]) == pytest.approx((once.effect, once.std_error), rel=1e-10)
    assert solve_score(psi_a, psi_b) == pytest.approx((twice.coef[0], twice.se[0]), rel=1e-10)
    assert len(set(np.round(-psi_b.sum(0) / psi_a.sum(0), 12))) == 2  # two different fold draws


def test_forest_plot_is_a_png(result, sim):
    assert forest_plot_png(result, _truth(sim))[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- bad input


def test_a_day_without_impressions_is_not_estimable_everywhere():
    out = estimate_all(prepare_sample(_rows_empty()), CausalParams(segments=("all", "device=tv")))
    assert out.estimates and all(not e.ok and e.effect is None for e in out.estimates)
    assert {e.reason for e in out.estimates} == {"not estimable: no impressions on this day"}
    assert not out.refutations


def _rows_empty():
    import pandas as pd

    return pd.DataFrame(columns=["impression_id", "features", "clicked", "watch_completion", "run_id", *FEATURES])


def test_a_feature_constant_in_a_segment_is_not_estimable_there_only(sample):
    frame = sample.frame.copy()
    frame.loc[frame["device"] == "tv", "platform_availability"] = 1.0
    out = estimate_all(PreparedSample(frame, sample.read, sample.skipped),
                       CausalParams(segments=("device=tv", "device=mobile")), features=("platform_availability",))
    tv, mobile = out.get("platform_availability", "device=tv"), out.get("platform_availability", "device=mobile")
    assert not tv.ok and tv.effect is None
    assert tv.reason == "not estimable: platform_availability is constant in segment device=tv"
    assert not out.get("platform_availability", "device=tv", METHOD_NAIVE).ok
    assert mobile.ok and mobile.covers(0.08)


def test_perfect_separation_in_the_propensity_model_is_not_estimable(sample):
    frame = sample.frame.copy()
    frame["platform_availability"] = (frame["pop_z"] > 0).astype(float)  # a control decides the treatment
    est = dml_estimate(frame, "platform_availability", "all", GLOBAL)
    assert not est.ok and est.effect is None and est.std_error is None
    assert est.reason.startswith("not estimable: perfect separation in the propensity model of "
                                 "platform_availability in segment all")


def test_too_few_rows_or_too_few_treated_are_not_estimable(sample):
    small = sample.frame.head(30)
    assert dml_estimate(small, "rating_alignment", "all", GLOBAL).reason == (
        "not estimable: 30 clicked impressions in segment all (need ≥ 60)")
    frame = sample.frame.copy()
    frame["platform_availability"] = 0.0
    frame.loc[:4, "platform_availability"] = 1.0
    assert "in only 5 impressions" in dml_estimate(frame, "platform_availability", "all", GLOBAL).reason


def test_nans_in_features_skip_those_rows_with_their_reason_and_counts_add_up(sim):
    rows = _rows(sim)
    clicked = rows.index[rows["clicked"]]
    rows.loc[clicked[:7], "recommendation_rank"] = np.nan
    rows.loc[clicked[7:10], "content_duration"] = np.inf
    rows.loc[clicked[10:12], "features"] = json.dumps({"time_segment": "night"})  # confounders missing
    rows.loc[clicked[12], "watch_completion"] = np.nan
    rows["clicked"] = rows["clicked"].astype(object)
    rows.loc[rows.index[rows["clicked"] == False][:4], "clicked"] = None  # no outcome row  # noqa: E712
    out = prepare_sample(rows)
    assert out.skipped["missing or invalid recommendation_rank"] == 7
    assert out.skipped["missing or invalid content_duration"] == 3
    assert out.skipped["missing or invalid pop_z"] == 2
    assert out.skipped["clicked but completion missing"] == 1
    assert out.skipped["no outcome recorded"] == 4
    assert out.adds_up and out.used == int(sim.outcomes["clicked"].sum()) - 13
    assert not out.frame[list(FEATURES)].isna().any().any()


def test_a_sample_with_rows_but_none_usable_says_why():
    import pandas as pd

    rows = pd.DataFrame({"impression_id": ["a", "b"], "features": ["{}", "{}"], "clicked": [False, False],
                         "watch_completion": [None, None], "run_id": ["r", "r"],
                         **{f: [1.0, 2.0] for f in FEATURES}, "device_type": ["tv", "web"]})
    out = estimate_all(prepare_sample(rows), CausalParams(segments=("all",)), features=("rating_alignment",))
    assert out.estimates[0].reason == ("not estimable: none of the 2 impressions is usable "
                                       "(not clicked: no completion observed: 2)")


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="n_folds"):
        CausalParams(n_folds=1).validate()
    with pytest.raises(ValueError, match="unknown segments"):
        CausalParams(segments=("device=toaster",)).validate()
    with pytest.raises(ValueError, match="n_rep"):
        CausalParams(n_rep=0).validate()
    with pytest.raises(ValueError, match="segment_fit"):
        CausalParams(segment_fit="by_hand").validate()


# --------------------------------------------------------------------------- several seeds


@pytest.mark.slow
def test_coverage_of_the_planted_effects_over_seeds(catalogue):
    """Every feature × segment over 3 seeds (bench/causal/coverage.py: 20 seeds). The pooled fit costs what
    segment all alone did, so every segment's interval is scored: 261 of them, whose coverage is 0.95 ±
    0.0135 when the intervals are right."""
    from collections import defaultdict

    hits, per_feature = defaultdict(list), defaultdict(list)
    for seed in (11, 12, 13):
        sim = simulate(catalogue, SimulationParams(120, 14, seed, date(2026, 11, 30)))
        out = estimate_all(prepare_sample(_rows(sim)), CausalParams())
        truth = _truth(sim)
        score = score_against_truth(out, truth)
        assert score["intervals"] == 87, score
        assert score["rank_dml_covers"] and not score["rank_naive_covers"], score
        assert out.refutations["random_common_cause_stable"]
        for e in out.dml():
            hits[e.segment == "all"].append(e.covers(truth[(e.feature, e.segment)]))
            per_feature[e.feature].append(e.covers(truth[(e.feature, e.segment)]))
    assert np.mean(hits[True]) >= 0.85, hits[True]  # segment all: 27 intervals
    everything = hits[True] + hits[False]
    assert len(everything) == 3 * 87 and np.mean(everything) >= 0.90, np.mean(everything)
    assert min(np.mean(v) for v in per_feature.values()) >= 0.80, {f: np.mean(v) for f, v in per_feature.items()}


# --------------------------------------------------------------------------- the re-rank with the weights


def _state(catalogue, finished):
    from gateway_pipelines.lib.personalization.recommender import UserState

    vector = catalogue.vectors[sorted(finished)].mean(axis=0)
    return UserState("u", vector / np.linalg.norm(vector), frozenset(finished))


def test_the_causal_adjustment_is_off_without_weights_or_when_intervals_cross_zero(catalogue):
    from gateway_pipelines.lib.personalization.recommender import RecommenderModel

    state = _state(catalogue, set(range(0, 50, 5)))
    base = [p.item for p in RecommenderModel(catalogue, []).recommend(state, 10).picks]
    crossing = RecommenderModel(catalogue, [], causal_weights={"release_recency_score": (0.5, -0.1, 1.1),
                                                               "content_duration": (float("nan"), 0, 0)})
    assert crossing.causal_weights == {} and set(crossing.causal_dropped) == {"release_recency_score",
                                                                            "content_duration"}
    assert "crosses 0" in crossing.causal_dropped["release_recency_score"]
    picks = crossing.recommend(state, 10).picks
    assert [p.item for p in picks] == base and all(p.causal == 0 for p in picks)
    used = RecommenderModel(catalogue, [], causal_weights={"release_recency_score": (0.5, 0.2, 0.8)})
    assert used.causal_weights == {"release_recency_score": 0.5}


def test_the_causal_adjustment_is_bounded(catalogue):
    from gateway_pipelines.lib.personalization.recommender import RecommenderConfig, RecommenderModel

    state = _state(catalogue, set(range(0, 50, 5)))
    huge = RecommenderModel(catalogue, [], causal_weights={"content_duration": -50.0, "release_recency_score": 80.0},
                            config=RecommenderConfig(causal_cap=0.07))
    picks = huge.recommend(state, 20).picks
    assert max(abs(p.causal) for p in picks) == pytest.approx(0.07)  # capped, and the cap is reached
    feats = huge.features(state, np.arange(len(catalogue)))
    adj, ref = huge.causal_adjustment(feats)
    assert np.abs(adj).max() <= 0.07 + 1e-12 and set(ref) == {"content_duration", "release_recency_score"}


def test_the_causal_re_rank_raises_expected_completion_over_similarity_only(catalogue, sim, result):
    import pandas as pd

    from gateway_pipelines.lib.personalization.evaluation import evaluate_source

    frame = pd.DataFrame(sim.events)
    for column in ("completion", "rating", "duration_s", "total_duration_s"):
        if column not in frame:
            frame[column] = np.nan
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    weights = {e.feature: (e.effect, e.ci_low, e.ci_high) for e in result.dml()}
    planted = {f: v for (f, s), v in _truth(sim).items() if s == "all"}
    res = evaluate_source(frame, catalogue, "simulator", causal_weights=weights, true_effects=planted, max_users=40)
    causal, plain = res.value("causal_rerank", "expected_completion"), res.value("similarity_only",
                                                                                 "expected_completion")
    assert res.n_users >= 20 and causal > plain + 0.005, (causal, plain)
    none = evaluate_source(frame, catalogue, "simulator", true_effects=planted, max_users=5)
    assert none.value("causal_rerank", "expected_completion") is None  # no weights: no re-rank to judge
