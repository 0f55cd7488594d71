"""The §6.3 preference rule on hand-computed examples, its fixes, determinism, late events and decay."""

import math

import numpy as np
import pandas as pd
import pytest

from gateway_pipelines.lib.personalization.catalogue import Catalogue
from gateway_pipelines.lib.personalization.preference import compute_preferences, is_finished, signal

T0 = pd.Timestamp("2026-11-01T20:00:00Z")


def tiny_catalogue() -> Catalogue:
    vectors = np.zeros((3, 768), dtype=np.float32)
    vectors[0, 0] = 1.0
    vectors[1, 1] = 1.0
    vectors[2, 0] = vectors[2, 2] = 1.0
    return Catalogue(["movie-1", "movie-2", "movie-3"], vectors, ["A", "B", "C"], [(28,), (35,), (28, 878)],
                     np.array([2020.0, 2010, 2000]), np.array([7.0, 6.0, 8.0]), np.array([10.0, 5.0, 1.0]),
                     np.array([100.0, 90, 120]), {28: "Action", 35: "Comedy", 878: "Science Fiction"})


def frame(rows) -> pd.DataFrame:
    base = {"completion": np.nan, "rating": np.nan, "duration_s": np.nan, "total_duration_s": np.nan,
            "is_rewatch": False}
    out = []
    for i, row in enumerate(rows):
        r = {**base, "event_id": f"e{i:03d}", **row}
        r["ts"] = T0 + pd.Timedelta(hours=r.pop("hour", i))
        out.append(r)
    return pd.DataFrame(out)


def test_signal_matches_the_media_gateway_formula():
    s = signal(np.array(["play", "play", "complete", "rate", "impression", "play"]),
               np.array([0.9, 0.5, np.nan, np.nan, np.nan, 1.0]),
               np.array([np.nan, 8.0, np.nan, 6.0, np.nan, 10.0]),
               np.array([5130.0, np.nan, np.nan, np.nan, np.nan, 6000]),
               np.array([5700.0, np.nan, np.nan, np.nan, np.nan, 6000]),
               np.array([False, False, False, False, False, True]))
    # 0.4*0.9 + 0.15 (no rating, completion > 0.8) + 0.1*0.9
    assert s[0] == pytest.approx(0.60)
    # 0.4*0.5 + 0.3*0.8 + 0.1*0.5 (duration ratio missing: the completion)
    assert s[1] == pytest.approx(0.49)
    # complete without completion: 1.0 -> 0.4 + 0.15 + 0.1
    assert s[2] == pytest.approx(0.65)
    # a MovieLens rating 6/10: watched -> 0.4 + 0.18 + 0.1
    assert s[3] == pytest.approx(0.68)
    assert s[4] == 0.0  # impressions carry no outcome
    assert s[5] == pytest.approx(1.0)  # capped: 0.4 + 0.3 + 0.2 + 0.1


def test_two_events_by_hand():
    cat = tiny_catalogue()
    events = frame([
        {"user_id": "u", "content_key": "movie-1", "event_type": "play", "completion": 0.9,
         "duration_s": 90.0, "total_duration_s": 100.0},
        {"user_id": "u", "content_key": "movie-2", "event_type": "play", "completion": 0.2,
         "duration_s": 20.0, "total_duration_s": 100.0},
    ])
    p = compute_preferences(events, cat)
    # event 1: s = 0.36 + 0.15 + 0.09 = 0.60 -> v = x1; c = 0.1 + 0.1*0.9 = 0.19; a(28) = 0.5 + 0.5*0.1*0.6
    # event 2: s = 0.08 + 0.02 = 0.10; alpha = clamp(0.3*(1 + 0.81)*(0.5 + 0.05)) = 0.29865
    alpha = 0.3 * (1 + (1 - 0.19)) * (0.5 + 0.5 * 0.10)
    expected = np.zeros(768)
    expected[0], expected[1] = 1 - alpha, alpha
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(p.vectors[0], expected, atol=1e-6)
    assert p.confidence[0] == pytest.approx(0.19 - 0.05 * 0.19)
    aff = p.genre_affinities(0)
    assert aff["28"] == pytest.approx(0.53)
    assert aff["35"] == pytest.approx(0.5 + (0 - 0.5) * 0.1 * 0.10)
    assert "878" not in aff  # untouched genres are not stored


def test_learning_rate_and_confidence_clamps():
    cat = tiny_catalogue()
    # many strong events: confidence climbs to 0.95 and no further; alpha never below 0.1
    rows = [{"user_id": "u", "content_key": "movie-1", "event_type": "complete", "rating": 10.0, "hour": h}
            for h in range(80)]
    p = compute_preferences(frame(rows), cat)
    assert p.confidence[0] == pytest.approx(0.95)
    weak = [{"user_id": "w", "content_key": "movie-2", "event_type": "play", "completion": 0.0, "hour": h}
            for h in range(80)]
    assert compute_preferences(frame(weak), cat).confidence[0] == pytest.approx(0.1)


def test_impressions_clicks_and_dismissals_do_not_move_the_vector():
    cat = tiny_catalogue()
    watched = {"user_id": "u", "content_key": "movie-1", "event_type": "play", "completion": 0.9}
    noise = [{"user_id": "u", "content_key": "movie-2", "event_type": t} for t in ("impression", "click", "dismiss")]
    alone = compute_preferences(frame([watched]), cat)
    mixed = compute_preferences(frame([watched, *noise]), cat)
    np.testing.assert_array_equal(alone.vectors[0], mixed.vectors[0])
    assert mixed.confidence[0] < alone.confidence[0]  # the dismiss lowered it
    assert mixed.genre_affinities(0)["35"] < 0.5  # and pulled its genre toward 0
    assert mixed.event_count[0] == 4
    # a user with only impressions has no vector (a cold start), not a zero vector
    only = compute_preferences(frame(noise[:2]), cat)
    assert not only.has_vector[0]


def test_rerun_is_identical_and_a_late_event_lands_in_its_place():
    rng = np.random.default_rng(3)
    cat = tiny_catalogue()
    rows = [{"user_id": f"u{u}", "content_key": f"movie-{rng.integers(1, 4)}", "event_type": "play",
             "completion": float(rng.random()), "hour": int(rng.integers(0, 500))} for u in range(4) for _ in range(30)]
    events = frame(rows)
    first = compute_preferences(events, cat)
    shuffled = compute_preferences(events.sample(frac=1, random_state=1), cat)
    np.testing.assert_array_equal(first.vectors, shuffled.vectors)
    np.testing.assert_array_equal(first.confidence, shuffled.confidence)
    # an event that arrives late (ingested last) but happened in the middle gives the same state as if
    # it had arrived on time: the rule orders by event time, not arrival
    late = frame([{"user_id": "u0", "content_key": "movie-3", "event_type": "complete", "hour": 250}])
    late["event_id"] = "late"
    on_time = pd.concat([late, events]).reset_index(drop=True)
    arrived_late = pd.concat([events, late]).reset_index(drop=True)
    a, b = compute_preferences(on_time, cat), compute_preferences(arrived_late, cat)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert not np.allclose(a.vectors[0], first.vectors[0])  # and it did change u0
    np.testing.assert_array_equal(a.vectors[1:], first.vectors[1:])  # and nobody else


def test_time_decay_forgets_old_taste():
    cat = tiny_catalogue()
    rows = [{"user_id": "u", "content_key": "movie-1", "event_type": "complete", "hour": h} for h in range(5)]
    rows.append({"user_id": "u", "content_key": "movie-2", "event_type": "complete", "hour": 24 * 365})
    events = frame(rows)
    plain = compute_preferences(events, cat)
    decayed = compute_preferences(events, cat, half_life_days=30)
    # after a year's gap the old vector keeps ~0.5^12 of its weight: the new title dominates
    assert decayed.vectors[0, 1] > 0.99 > plain.vectors[0, 1]
    assert decayed.confidence[0] < plain.confidence[0]
    again = compute_preferences(events, cat, half_life_days=30)
    np.testing.assert_array_equal(decayed.vectors, again.vectors)
    with pytest.raises(ValueError):
        compute_preferences(events, cat, half_life_days=0)


def test_vectors_have_the_content_dimension_and_unit_length():
    cat = tiny_catalogue()
    p = compute_preferences(frame([{"user_id": "u", "content_key": "movie-3", "event_type": "play", "completion": 0.5},
                                   {"user_id": "u", "content_key": "movie-1", "event_type": "play", "completion": 0.7}]),
                            cat)
    assert p.vectors.shape == (1, 768)
    assert math.isclose(float(np.linalg.norm(p.vectors[0])), 1.0, rel_tol=1e-6)


def test_finished_rule():
    assert is_finished(np.array(["play", "play", "complete", "rate", "impression", "dismiss"]),
                       np.array([0.69, 0.7, np.nan, np.nan, 0.9, 1.0])).tolist() == [
        False, True, True, True, False, False]
