"""The simulator: deterministic, with its planted effects stored, and confounded as documented."""

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from gateway_pipelines.lib.personalization.simulator import FEATURES, SimulationParams, simulate
from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue

PARAMS = SimulationParams(n_users=60, n_days=10, seed=5, end_date=date(2026, 11, 30))


@pytest.fixture(scope="module")
def catalogue():
    return synthetic_catalogue(500, seed=3)


@pytest.fixture(scope="module")
def sim(catalogue):
    return simulate(catalogue, PARAMS)


def test_same_seed_same_data(catalogue, sim):
    again = simulate(catalogue, PARAMS)
    assert again.jsonl() == sim.jsonl() and again.data_hash == sim.data_hash
    pd.testing.assert_frame_equal(again.impressions, sim.impressions)
    other = simulate(catalogue, SimulationParams(60, 10, 6, date(2026, 11, 30)))
    assert other.data_hash != sim.data_hash
    assert sim.run_id == "sim-s5-u60-d10-20261130"


def test_truth_covers_every_feature_and_segment(sim):
    truth = {(f, s): v for f, s, v, _ in sim.truth}
    assert {f for f, _ in truth} == set(FEATURES)
    assert all((f, "all") in truth for f in FEATURES)
    assert truth[("genre_match_score", "device=tv")] == 0.20
    assert truth[("genre_match_score", "device=mobile")] == 0.10
    assert 0.10 < truth[("genre_match_score", "all")] < 0.20  # the clicked-impression mix
    assert truth[("content_duration", "user_type=new")] == -0.08
    assert truth[("user_session_length", "time_of_day=night")] == -0.08
    assert truth[("recommendation_rank", "all")] == -0.008
    assert ("device_type", "device=tv") not in truth  # undefined within one device


def test_impressions_record_serve_time_features_and_outcomes(sim):
    imp, out = sim.impressions, sim.outcomes
    assert len(imp) == len(out) and imp["impression_id"].is_unique
    assert set(imp["platform_availability"].unique()) <= {0.0, 1.0}
    assert set(imp["device_type"].unique()) <= {"tv", "mobile", "web"}
    clicked = out[out["clicked"]]
    assert clicked["watch_completion"].between(0, 1).all() and out[~out["clicked"]]["watch_completion"].isna().all()
    assert sim.stats["clipped_completions"] / len(clicked) < 0.01  # the linear model rarely clips
    types = {e["event_type"] for e in sim.events}
    assert {"impression", "click", "play"} <= types and types <= {"impression", "click", "play", "complete", "dismiss"}
    assert sum(e["event_type"] == "impression" for e in sim.events) == len(imp)


def test_rank_is_confounded_by_popularity(catalogue):
    sim = simulate(catalogue, SimulationParams(150, 14, 11, date(2026, 11, 30)))
    data = sim.impressions.merge(sim.outcomes, on="impression_id")
    data = data[data["clicked"]].copy()
    data["pop_z"] = data["features"].map(lambda s: json.loads(s)["pop_z"])
    assert np.corrcoef(data["pop_z"], data["recommendation_rank"])[0, 1] < -0.2  # popular titles rank higher
    slope = np.polyfit(data["recommendation_rank"], data["watch_completion"], 1)[0]
    assert slope < 2 * -0.008  # the naive slope overstates the planted -0.008 per position
