"""Strategy bandits on a real warehouse, through Dagster and the CLI: the simulated strategy log in, the
nightly posteriors versioned by day (a rerun writes nothing, a recompute from the log is identical), a
day without impressions and bad rows recorded not crashed, and `gateway recommend --strategy bandit`
drawing its strategy from the stored posteriors and logging it with its propensity."""

from __future__ import annotations

import json
import math

import dagster as dg
import numpy as np
import pytest

from gateway_pipelines.cli import main
from gateway_pipelines.defs.learning.bandits import strategy_bandits, strategy_log_simulation
from gateway_pipelines.lib.learning import bandits as b
from gateway_pipelines.lib.personalization.synthetic import insert_catalogue, synthetic_catalogue
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from tests.conftest import _create_database, _drop_database

DAY = "2026-11-30"  # the strategy log's last day (the simulator's fixed end date)
USERS, DAYS = 150, 14
STATE_SQL = ("SELECT as_of, context, arm, alpha, beta, n, mean, p_best, state_hash, run_id, computed_at "
             "FROM learning.bandit_arms ORDER BY as_of, context, arm")


def _materialize(url, home, assets, partition=None, config=None):
    resources = {"warehouse": WarehouseResource(database_url=url, gateway_home=str(home))}
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(assets, resources=resources, instance=instance, partition_key=partition,
                                run_config={"ops": config} if config else None, raise_on_error=False)
        assert result.success, [e.event_specific_data for e in result.all_events if e.is_failure]
        (mat,) = result.asset_materializations_for_node(assets[-1].op.name)
        return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _rows(url, query=STATE_SQL, params=()):
    with connect(url) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def world(server_url, tmp_path_factory):
    url = _create_database(server_url, migrate=True)
    home = tmp_path_factory.mktemp("bandit-home")
    with connect(url) as conn:
        insert_catalogue(conn, synthetic_catalogue(200, seed=8))
    sim = _materialize(url, home, [strategy_log_simulation],
                       config={"strategy_log_simulation": {"config": {"users": USERS, "days": DAYS}}})
    first = _materialize(url, home, [strategy_bandits], DAY)
    yield {"url": url, "home": home, "sim": sim, "first": first, "state": _rows(url)}
    _drop_database(server_url, url)


def test_the_strategy_log_lands_with_propensities_and_truth(world):
    sim, url = world["sim"], world["url"]
    assert sim["written"] is True and sim["dagster/row_count"] > 3000
    shares = sim["online_best_share_per_500_sessions"]  # Thompson online against the same planted model
    assert len(shares) == 12 and shares[0] < 0.6 and shares[-1] >= 0.85
    assert isinstance(sim["online_sessions_until_90pct_best"], int)
    n, with_p, truth = _rows(url, "SELECT (SELECT count(*) FROM learning.impressions WHERE source = "
                                  "'strategy_simulator'), (SELECT count(*) FROM learning.impressions WHERE "
                                  "propensity IS NOT NULL), (SELECT count(*) FROM learning.bandit_truth)")[0]
    assert n == with_p == sim["dagster/row_count"] and truth == 96
    again = _materialize(url, world["home"], [strategy_log_simulation],
                         config={"strategy_log_simulation": {"config": {"users": USERS, "days": DAYS}}})
    assert again["written"] is False and again["data_hash"] == sim["data_hash"]


def test_the_nightly_state_is_written_with_its_figures(world):
    meta, state = world["first"], world["state"]
    assert meta["written"] is True and meta["counts_add_up"] is True
    assert meta["rows_read"] == meta["rows_used"] == world["sim"]["dagster/row_count"]
    assert meta["dagster/row_count"] == len(state) == 96 and {r[0].isoformat() for r in state} == {DAY}
    assert sum(r[5] for r in state) == meta["rows_used"]
    for row in state:
        alpha, beta, n = row[3], row[4], row[5]
        assert alpha + beta == pytest.approx(2 + n) and row[6] == pytest.approx(alpha / (alpha + beta))
    # 150 users: ~420 impressions a context
    assert meta["contexts_with_data"] == 24 and meta["posterior_best_is_planted_best"] >= 16
    assert meta["ope_intervals"] == 8 and meta["ope_intervals_covering_truth"] >= 6
    est = meta["off_policy_estimates"]
    assert set(est) == set(b.ARMS) and all(v["dr_ci"][0] <= v["dr"] <= v["dr_ci"][1] for v in est.values())
    for key in ("posteriors", "convergence", "off_policy_values"):
        assert "|" in meta[key]
    assert meta["impressions_served_this_day"] > 0


def test_a_rerun_changes_nothing_and_a_recompute_from_the_log_is_identical(world):
    url, home, state = world["url"], world["home"], world["state"]
    rerun = _materialize(url, home, [strategy_bandits], DAY)
    assert rerun["written"] is False and rerun["state_hash"] == world["first"]["state_hash"]
    assert _rows(url) == state  # computed_at and run_id included: nothing was touched
    with connect(url) as conn:
        conn.execute("DELETE FROM learning.bandit_arms WHERE as_of = %s", (DAY,))
        conn.commit()
    again = _materialize(url, home, [strategy_bandits], DAY)
    assert again["written"] is True
    recomputed = _rows(url)
    assert [r[:9] for r in recomputed] == [r[:9] for r in state]  # α, β, n, mean, P(best), hash: identical


def test_days_are_versions_a_past_day_sees_only_its_log_and_an_empty_day_writes_nothing(world):
    url, home = world["url"], world["home"]
    early = _materialize(url, home, [strategy_bandits], "2026-11-20")
    assert early["written"] is True and 0 < early["rows_used"] < world["first"]["rows_used"]
    n_by_day = dict(_rows(url, "SELECT as_of::text, sum(n) FROM learning.bandit_arms GROUP BY 1"))
    assert n_by_day == {"2026-11-20": early["rows_used"], DAY: world["first"]["rows_used"]}
    empty = _materialize(url, home, [strategy_bandits], "2026-01-05")
    assert empty["rows_read"] == 0 and empty["written"] is False
    assert empty["outcome"].startswith("not estimable: no usable impression")
    assert _rows(url, "SELECT count(*) FROM learning.bandit_arms WHERE as_of = '2026-01-05'")[0][0] == 0


def test_recommend_draws_its_strategy_from_the_posteriors_and_logs_the_propensity(world, monkeypatch, capsys):
    url, home = world["url"], world["home"]
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("GATEWAY_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    assert main(["recommend", "bandit-user-1", "--k", "5", "--strategy", "bandit", "--device", "tv",
                 "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "strategy " in out and f"drawn from the posteriors of {DAY}" in out
    rows = _rows(url, "SELECT strategy, propensity, features, device_type, served_at FROM learning.impressions "
                      "WHERE user_id = 'bandit-user-1' ORDER BY rank")
    assert len(rows) == 5 and len({(r[0], r[1]) for r in rows}) == 1
    arm, propensity, features, device, served = rows[0]
    assert arm in b.ARMS and device == "tv"
    ctx = b.context_key("tv", b.daypart(served.hour + served.minute / 60), "new")
    assert features["context"] == ctx and features["user_type"] == "new"
    probs = features["bandit_probabilities"]
    assert propensity == pytest.approx(probs[arm], abs=1e-6) and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    assert min(probs.values()) >= b.EPSILON / len(b.ARMS) - 1e-9
    # the probabilities are the serving policy of that context's stored posterior
    state = {(r[1], r[2]): (r[3], r[4]) for r in world["state"]}
    alpha = np.array([state[(ctx, a)][0] for a in b.ARMS])
    beta = np.array([state[(ctx, a)][1] for a in b.ARMS])
    expected = b.serving_probabilities(alpha, beta, np.random.default_rng(4))
    assert [probs[a] for a in b.ARMS] == pytest.approx(expected.tolist(), abs=1e-6)
    # a named strategy is served with propensity 1
    assert main(["recommend", "bandit-user-2", "--k", "3", "--strategy", "popularity", "--device", "web"]) == 0
    assert _rows(url, "SELECT DISTINCT strategy, propensity FROM learning.impressions WHERE user_id = "
                      "'bandit-user-2'") == [("popularity", 1.0)]
    with pytest.raises(SystemExit) as exc:  # argparse: a device outside the contexts is a usage error
        main(["recommend", "bandit-user-3", "--strategy", "bandit", "--device", "fridge"])
    assert exc.value.code == 2 and "invalid choice: 'fridge'" in capsys.readouterr().err


def test_bad_rows_are_recorded_and_the_rest_is_learned(fresh_db, tmp_path):
    from datetime import UTC, datetime

    served = datetime(2026, 3, 1, 20, 30, tzinfo=UTC)
    rows = [  # (id, strategy, device, user type, propensity, outcome or None)
        ("ok-1", "popularity", "tv", "new", 0.4, (True, 0.8, 8.0)),
        ("ok-2", "popularity", "tv", "new", 0.4, (False, None, None)),
        ("label-1", "shiny", "tv", "new", None, (True, 0.5, None)),
        ("label-2", "simulated_policy", "web", "returning", None, (False, None, None)),
        ("no-outcome", "causal_rerank", "tv", "returning", 0.3, None),
        ("nan-rating", "causal_rerank", "tv", "returning", 0.3, (True, 0.6, float("nan"))),
        ("device", "popularity", "cli", "new", 0.4, (False, None, None)),
        ("usertype", "popularity", "tv", None, 0.4, (False, None, None)),
    ]
    with connect(fresh_db) as conn:
        for imp, arm, device, user_type, p, outcome in rows:
            conn.execute(
                "INSERT INTO learning.impressions (impression_id, user_id, content_id, rank, served_at, device_type, "
                "time_of_day, strategy, propensity, session_id, features) VALUES (%s, 'u', 'movie-1', 1, %s, %s, "
                "%s, %s, %s, %s, %s)",
                (imp, served, device, 20.5 / 24, arm, p, f"s-{imp}", json.dumps({"user_type": user_type} if user_type
                                                                                 else {})))
            if outcome:
                conn.execute("INSERT INTO learning.outcomes (impression_id, clicked, watch_completion, rating) "
                             "VALUES (%s, %s, %s, %s)", (imp, *outcome))
        conn.commit()
    meta = _materialize(fresh_db, tmp_path, [strategy_bandits], "2026-03-01")
    assert (meta["rows_read"], meta["rows_used"], meta["rows_skipped"], meta["counts_add_up"]) == (8, 2, 6, True)
    assert meta["skipped"] == {"strategy not an arm": 2, "no outcome recorded": 1, "unknown device": 1,
                               "no user type": 1, "rating is NaN": 1}
    assert meta["unknown_strategies"] == {"shiny": 1, "simulated_policy": 1}
    assert meta["written"] is True and "posterior_best_is_planted_best" not in meta  # no truth: not simulated
    alpha, beta, n = _rows(fresh_db, "SELECT alpha, beta, n FROM learning.bandit_arms WHERE context = "
                                     "'tv|evening|new' AND arm = 'popularity'")[0]
    assert n == 2 and alpha == pytest.approx(1 + 0.84) and beta == pytest.approx(1 + 0.16 + 1)
    assert math.isclose(sum(r[0] for r in _rows(fresh_db, "SELECT n FROM learning.bandit_arms")), 2)
