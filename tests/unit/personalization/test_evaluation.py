"""The offline evaluation on simulated users: the recommender beats popularity, on the simulator's
events and on a MovieLens-format dataset, over several seeds."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from gateway_pipelines.lib.personalization.evaluation import _ndcg, evaluate_source
from gateway_pipelines.lib.personalization.events import parse_movielens
from gateway_pipelines.lib.personalization.movielens import generate_movielens, write_movielens
from gateway_pipelines.lib.personalization.simulator import SimulationParams, simulate
from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue


@pytest.fixture(scope="module")
def catalogue():
    return synthetic_catalogue(800, seed=4)


def sim_events(sim) -> pd.DataFrame:
    frame = pd.DataFrame(sim.events)
    for column in ("completion", "rating", "duration_s", "total_duration_s"):
        if column not in frame:
            frame[column] = np.nan
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def test_ndcg_by_hand():
    assert _ndcg([1, 2, 3], {2}, 10) == pytest.approx(1 / np.log2(3))
    assert _ndcg([1, 2], {1, 2}, 10) == pytest.approx(1.0)
    assert _ndcg([5], {1}, 10) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recommender_beats_both_baselines_on_simulated_users(catalogue, seed):
    sim = simulate(catalogue, SimulationParams(150, 14, seed, date(2026, 11, 30)))
    res = evaluate_source(sim_events(sim), catalogue, "simulator")
    assert res.n_users >= 40
    ours, pop = res.value("recommender", "hit_rate"), res.value("popularity", "hit_rate")
    assert ours >= 1.2 * pop, res.rows
    assert res.value("recommender", "ndcg") > res.value("popularity", "ndcg")
    assert {(r.method, r.metric) for r in res.rows} == {(m, x) for m in ("recommender", "popularity", "cooccurrence")
                                                       for x in ("hit_rate", "ndcg")}


@pytest.mark.slow
def test_movielens_format_beats_popularity_by_20_percent(catalogue, tmp_path):
    data = generate_movielens(catalogue, 300, seed=5)
    ratings, _ = write_movielens(data, tmp_path)
    parsed = parse_movielens(ratings, frozenset(catalogue.keys), dataset="ml-test")
    assert parsed.not_in_catalogue == data.n_orphan_ratings + data.n_unlinked_ratings > 0
    frame = pd.DataFrame([e.__dict__ for e in parsed.events])
    res = evaluate_source(frame, catalogue, parsed.source)
    assert res.n_users >= 50
    assert res.lift("hit_rate") >= 0.2, res.rows
