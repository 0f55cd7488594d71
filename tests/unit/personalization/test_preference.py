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


def _reference(events: pd.DataFrame, cat: Catalogue, half_life_days=None) -> dict:
    """The rule of the module docstring, one event at a time in float64: what the vectorised replay must equal."""
    index = cat.index
    rows = events[events["content_key"].isin(index)].copy()
    rows["t"] = (rows["ts"] - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(seconds=1)
    out = {}
    for user, mine in rows.sort_values(["user_id", "t", "event_id"]).groupby("user_id", sort=True):
        v, c, aff, prev = None, 0.1, {}, None
        for r in mine.itertuples(index=False):
            if r.event_type not in ("play", "progress", "complete", "rate", "dismiss"):
                continue
            delta = 1.0
            if half_life_days is not None and prev is not None:
                delta = 0.5 ** (max(r.t - prev, 0.0) / (half_life_days * 86400.0))
                c = 0.1 + (c - 0.1) * delta
                aff = {g: 0.5 + (a - 0.5) * delta for g, a in aff.items()}
            x = cat.vectors[index[r.content_key]].astype(np.float64)
            if r.event_type == "dismiss":
                weight, up = 0.5, False
            else:
                comp = r.completion if not math.isnan(r.completion) else (
                    1.0 if r.event_type in ("complete", "rate") else 0.0)
                missing = math.isnan(r.duration_s) or math.isnan(r.total_duration_s) or r.total_duration_s <= 0
                ratio = min(comp if missing else r.duration_s / r.total_duration_s, 1.0)
                rated = 0.3 * r.rating / 10 if not math.isnan(r.rating) else (0.15 if comp > 0.8 else 0.0)
                s = min(1.0, 0.4 * comp + rated + 0.2 * float(r.is_rewatch) + 0.1 * ratio)
                alpha = 1 - (1 - min(max(0.3 * (1 + (1 - c)) * (0.5 + 0.5 * s), 0.1), 0.7)) * delta
                v = x if v is None else (1 - alpha) * v + alpha * x
                v = v / np.linalg.norm(v)
                weight, up = s, s > 0.5
            c = min(max(c + 0.1 * (1 - c) if up else c - 0.05 * c, 0.1), 0.95)
            for g in cat.genres[index[r.content_key]]:
                a = aff.get(g, 0.5)
                aff[g] = min(max(a + (float(up) - a) * 0.1 * weight, 0.0), 1.0)
            prev = r.t
        out[user] = (v, c, aff)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_vectorised_replay_equals_the_rule_applied_event_by_event(seed):
    from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue

    rng = np.random.default_rng(seed)
    cat = synthetic_catalogue(40, clusters=4, seed=seed)
    n = 400
    events = pd.DataFrame({
        "event_id": [f"e{i:04d}" for i in rng.permutation(n)],
        "user_id": [f"u{u}" for u in rng.integers(0, 7, n)],  # users with few and with many events
        "content_key": np.array(cat.keys + ["movie-unknown"])[rng.integers(0, len(cat) + 1, n)],
        "event_type": rng.choice(["play", "progress", "complete", "rate", "impression", "click", "dismiss"], n),
        "completion": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        "rating": np.where(rng.random(n) < 0.7, np.nan, rng.integers(0, 11, n).astype(float)),
        "duration_s": np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 6000),
        "total_duration_s": np.where(rng.random(n) < 0.1, 0.0, 6000.0),
        "is_rewatch": rng.random(n) < 0.1,
        # whole hours: many events of a user share a time, so the event_id tie-break matters
        "ts": T0 + pd.to_timedelta(rng.integers(0, 60, n), unit="h"),
    })
    for half_life in (None, 2.0):
        got = compute_preferences(events, cat, half_life_days=half_life)
        want = _reference(events, cat, half_life)
        assert got.users == sorted(want)
        for row, user in enumerate(got.users):
            v, c, aff = want[user]
            assert got.has_vector[row] == (v is not None)
            if v is not None:
                np.testing.assert_allclose(got.vectors[row], v, atol=2e-6)
            assert got.confidence[row] == pytest.approx(c, abs=1e-12)
            assert got.genre_affinities(row) == pytest.approx({str(g): round(a, 6) for g, a in aff.items()}, abs=1e-6)
