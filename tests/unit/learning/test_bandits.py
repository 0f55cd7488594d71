"""Strategy bandits, pure parts: the reward, the log's bad rows, exact recompute, Thompson serving, and on
the simulated strategy log (planted best strategy per context, known logging policy) over three seeds:
the posterior mass on the planted best arm, and off-policy intervals around the true arm values."""

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from gateway_pipelines.lib.learning import bandits as b
from gateway_pipelines.lib.personalization.simulator import (
    LOGGING_POLICY,
    StrategyLogParams,
    best_strategy,
    simulate_strategy_log,
    strategy_outcomes,
    strategy_value,
)
from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue

SEEDS = (1, 2, 3)
T0 = datetime(2026, 11, 30, 20, tzinfo=UTC)


def _frame(rows: list[dict]) -> pd.DataFrame:
    base = {"session_id": None, "served_at": T0, "strategy": "popularity", "device_type": "tv",
            "time_of_day": 20 / 24, "user_type": "returning", "propensity": 0.25, "has_outcome": True,
            "clicked": False, "completion": float("nan"), "rating": float("nan"), "run_id": None,
            "completion_nan": False, "rating_nan": False}
    return pd.DataFrame([{**base, "impression_id": f"i{k}", **r} for k, r in enumerate(rows)],
                        columns=["impression_id", *base])


def test_reward_is_the_composite_clipped_to_0_1():
    r = b.reward([True, True, False, True], [1.0, 0.5, np.nan, np.nan], [10.0, np.nan, np.nan, 6.0])
    assert r.tolist() == pytest.approx([1.0, 0.45, 0.0, 0.2 + 0.18])
    assert b.reward([True], [2.0], [10.0])[0] == 1.0  # clipped


def test_contexts_and_dayparts():
    assert len(b.CONTEXTS) == 24 and b.context_key("tv", "evening", "new") == "tv|evening|new"
    assert [b.daypart(h) for h in (5.9, 6, 12, 18, 22, 23.5)] == ["night", "morning", "afternoon", "evening",
                                                                    "night", "night"]
    with pytest.raises(ValueError, match="no context"):
        b.context_key("fridge", "evening", "new")


def test_bad_rows_are_skipped_with_a_reason_and_the_counts_add_up():
    frame = _frame([
        {"clicked": True, "completion": 0.8, "rating": 8.0},  # fine: 0.2 + 0.4 + 0.24
        {"strategy": "simulated_policy"},
        {"strategy": "simulated_policy"},
        {"strategy": None},
        {"has_outcome": False},
        {"device_type": "cli"},
        {"time_of_day": 1.7},
        {"user_type": None},
        {"clicked": True, "completion": float("nan"), "completion_nan": True},
        {"clicked": True, "completion": 1.4},
        {"clicked": True, "completion": 0.5, "rating": float("nan"), "rating_nan": True},
        {"clicked": True, "completion": 0.5, "rating": 11.0},
        {"time_of_day": float("nan"), "served_at": T0.replace(hour=8)},  # served_at's hour: morning
    ])
    log = b.prepare_log(frame)
    assert log.read == 13 and log.used == 2 and log.adds_up
    assert log.skipped == {"strategy not an arm": 3, "no outcome recorded": 1, "unknown device": 1,
                           "time_of_day outside 0-1": 1, "no user type": 1, "completion is NaN": 1,
                           "completion outside 0-1": 1, "rating is NaN": 1, "rating outside 0-10": 1}
    assert log.unknown_strategies == {"<none>": 1, "simulated_policy": 2}
    got = log.rows.set_index("impression_id")
    assert got.loc["i0", "reward"] == pytest.approx(0.84) and got.loc["i0", "context"] == "tv|evening|returning"
    assert got.loc["i12", "context"] == "tv|morning|returning" and got.loc["i12", "reward"] == 0.0


def test_an_empty_log_is_not_estimable_not_a_crash():
    log = b.prepare_log(_frame([]))
    assert (log.read, log.used, log.adds_up) == (0, 0, True)
    state = b.posteriors(log.rows)
    assert len(state) == 96 and (state["n"] == 0).all() and (state["alpha"] == 1).all()
    values, why = b.off_policy_values(log.rows)
    assert values == [] and why.startswith("not estimable")


def test_posteriors_are_exact_and_identical_whatever_the_order(strategy_logs):
    rows = strategy_logs[1][1].rows
    state = b.posteriors(rows)
    shuffled = b.posteriors(rows.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(state, shuffled, check_exact=True)
    assert b.state_hash(state) == b.state_hash(shuffled)
    one = state[(state["context"] == "tv|evening|returning") & (state["arm"] == "causal_rerank")].iloc[0]
    sub = rows[(rows["context"] == "tv|evening|returning") & (rows["arm"] == "causal_rerank")]
    assert one["n"] == len(sub) > 0
    assert one["alpha"] == 1 + math.fsum(sub["reward"]) and one["beta"] == 1 + math.fsum(1 - sub["reward"])
    assert state.groupby("context")["p_best"].sum().to_numpy() == pytest.approx(np.ones(24))
    assert b.state_hash(b.posteriors(rows.iloc[1:])) != b.state_hash(state)


def test_thompson_serving_is_seeded_and_never_starves_an_arm():
    alpha, beta = np.array([200.0, 20.0, 20.0, 20.0]), np.array([20.0, 200.0, 200.0, 200.0])
    p = b.serving_probabilities(alpha, beta, np.random.default_rng(1))
    assert p.sum() == pytest.approx(1) and p[0] == pytest.approx(0.95 + 0.0125) and p.min() == pytest.approx(0.0125)
    first = b.choose_arm(alpha, beta, np.random.default_rng(9))
    again = b.choose_arm(alpha, beta, np.random.default_rng(9))
    assert first[0] == again[0] and first[1] == again[1] == pytest.approx(first[2][b.ARMS.index(first[0])])
    draws = [b.choose_arm(alpha, beta, np.random.default_rng(s))[0] for s in range(200)]
    assert 0.9 < draws.count("content_similarity") / 200 < 1.0
    flat = b.serving_probabilities(np.ones(4), np.ones(4), np.random.default_rng(2))
    assert flat == pytest.approx(np.full(4, 0.25), abs=0.03)
    with pytest.raises(ValueError, match="epsilon"):
        b.serving_probabilities(alpha, beta, np.random.default_rng(1), epsilon=0)


def test_strategy_configs_change_only_what_the_arm_means():
    @dataclass(frozen=True)
    class Cfg:
        w_fused: float = 1.0
        w_sim: float = 0.5
        w_cooc: float = 0.5
        w_pop: float = 0.3
        causal_scale: float = 1.0
        mmr_lambda: float = 0.85
        max_genre_share: float = 0.6

    assert b.strategy_config("causal_rerank", Cfg()) == Cfg()
    pop = b.strategy_config("popularity", Cfg())
    assert (pop.w_fused, pop.w_sim, pop.causal_scale, pop.w_pop) == (0, 0, 0, 1)
    assert b.strategy_config("diversity_heavy", Cfg()).mmr_lambda == 0.5
    with pytest.raises(ValueError, match="unknown strategy"):
        b.strategy_config("random", Cfg())


# --------------------------------------------------------------------------- on the simulated log


@pytest.fixture(scope="module")
def strategy_logs():
    catalogue = synthetic_catalogue(200, seed=3)
    out = {}
    for seed in SEEDS:
        log = simulate_strategy_log(catalogue, StrategyLogParams(n_users=400, n_days=14, seed=seed,
                                                                 end_date=date(2026, 11, 30)))
        frame = log.impressions.merge(log.outcomes, on="impression_id", how="left")
        frame = frame.rename(columns={"watch_completion": "completion"})
        frame["has_outcome"] = frame["clicked"].notna()
        frame["user_type"] = [json.loads(x)["user_type"] for x in frame["features"]]
        out[seed] = (log, b.prepare_log(frame))
    return out


def test_the_strategy_log_is_deterministic_and_logs_its_policy(strategy_logs):
    log, prepared = strategy_logs[1]
    small = StrategyLogParams(n_users=30, n_days=5, seed=4)
    once = simulate_strategy_log(synthetic_catalogue(200, seed=3), small)
    again = simulate_strategy_log(synthetic_catalogue(200, seed=3), small)
    assert again.data_hash == once.data_hash and again.data_hash != log.data_hash
    pd.testing.assert_frame_equal(again.impressions, once.impressions)
    assert prepared.used == prepared.read == len(log.impressions) > 20_000
    imps = log.impressions
    assert set(imps["strategy"]) == set(b.ARMS) and imps["session_id"].notna().all()
    user_type = [json.loads(x)["user_type"] for x in imps["features"]]
    expected = [LOGGING_POLICY[u][b.ARMS.index(a)] for u, a in zip(user_type, imps["strategy"])]
    assert imps["propensity"].tolist() == expected
    # one strategy per session: the propensity is the session's
    assert (imps.groupby("session_id")["strategy"].nunique() == 1).all()
    truth = {(c, a): v for c, a, v, _ in log.truth}
    assert len(truth) == 96
    for ctx in b.CONTEXTS:
        ranked = sorted(b.ARMS, key=lambda a: -truth[(ctx, a)])
        assert ranked[0] == best_strategy(*ctx.split("|"))
        assert truth[(ctx, ranked[0])] - truth[(ctx, ranked[1])] > 0.05  # the planted margin
    assert {best_strategy(*c.split("|")) for c in b.CONTEXTS} == set(b.ARMS)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_posterior_mass_moves_to_the_planted_best_arm_in_every_context(strategy_logs, seed):
    log, prepared = strategy_logs[seed]
    truth = {(c, a): v for c, a, v, _ in log.truth}
    best = {c: max(b.ARMS, key=lambda a: truth[(c, a)]) for c in b.CONTEXTS}
    state = b.posteriors(prepared.rows)
    top = state.loc[state.groupby("context")["p_best"].idxmax()]
    wrong = [r for r in top.itertuples() if r.arm != best[r.context]]
    # over 20 seeds the posterior's favourite is the planted best in 23-24 of 24 contexts; a miss is a
    # thin context (new users at a rare daypart) and never a confident one
    assert len(wrong) <= 2 and all(r.p_best < 0.9 for r in wrong)
    conv = b.convergence(prepared.rows, best)
    assert len(conv) == 24 and conv["impressions"].min() > 100
    # with ~1,150 impressions a context (14 days of 400 users), most contexts are settled
    # (20 seeds: 12-19 contexts at ≥ 0.95, after a median of 350-580 impressions of the context)
    assert (conv["p_best_final"] >= 0.95).sum() >= 10 and conv["p_best_final"].median() >= 0.9
    reached = conv["impressions_to_threshold"].dropna()
    assert len(reached) >= 10 and reached.median() < 800
    # and before the data, nothing was settled: the first checkpoint is far from 0.95 somewhere
    early = b.convergence(prepared.rows.groupby("context").head(40), best)
    assert (early["p_best_final"] < 0.95).sum() >= 20


@pytest.mark.slow
def test_off_policy_intervals_cover_the_true_arm_values(strategy_logs):
    covered_ips = covered_dr = total = 0
    for seed in SEEDS:
        log, prepared = strategy_logs[seed]
        truth = {(c, a): v for c, a, v, _ in log.truth}
        true_values = b.true_arm_values(prepared.rows, truth)
        values, why = b.off_policy_values(prepared.rows)
        assert why is None and [v.arm for v in values] == list(b.ARMS)
        for v in values:
            t = true_values[v.arm]
            lo, hi = v.interval("ips")
            covered_ips += lo <= t <= hi
            lo, hi = v.interval("dr")
            covered_dr += lo <= t <= hi
            total += 1
            assert v.dr_se < v.ips_se  # the outcome model takes out the context's variance
            assert abs(v.dr - t) < 5 * v.dr_se
    assert total == 12 and covered_ips >= 10 and covered_dr >= 10


def test_ope_ignores_rows_without_a_propensity_and_says_when_it_cannot(strategy_logs):
    rows = strategy_logs[2][1].rows.copy()
    full, _ = b.off_policy_values(rows)
    rows.loc[rows.index[::2], "propensity"] = np.nan
    half, _ = b.off_policy_values(rows)
    assert half[0].n == (rows["propensity"].notna()).sum() < full[0].n
    rows["propensity"] = np.nan
    assert b.off_policy_values(rows) == ([], "not estimable: no impression with a logged propensity")
    assert b.true_arm_values(rows, {}) is None


def test_markdown_tables_name_every_context_and_arm(strategy_logs):
    log, prepared = strategy_logs[3]
    state = b.posteriors(prepared.rows)
    md = b.posterior_markdown(state, {c: best_strategy(*c.split("|")) for c in b.CONTEXTS})
    assert md.count("\n") == 25 and all(c in md for c in b.CONTEXTS)
    values, _ = b.off_policy_values(prepared.rows)
    truth = b.true_arm_values(prepared.rows, {(c, a): v for c, a, v, _ in log.truth})
    ope = b.ope_markdown(values, truth)
    assert ope.count("\n") == 5 and "covered" in ope


def test_served_at_only_breaks_ties_of_order_not_state():
    rows = _frame([{"clicked": True, "completion": 0.5, "served_at": T0 + timedelta(minutes=k)} for k in range(5)])
    a = b.posteriors(b.prepare_log(rows).rows)
    rows["served_at"] = rows["served_at"].iloc[::-1].to_numpy()
    assert b.state_hash(b.posteriors(b.prepare_log(rows).rows)) == b.state_hash(a)


@pytest.mark.slow
def test_online_thompson_moves_its_serving_to_the_planted_best_arm():
    best = {c: best_strategy(*c.split("|")) for c in b.CONTEXTS}

    def serve(ctx, arm, rng):
        return b.reward(*strategy_outcomes(*ctx.split("|"), arm, rng))

    for seed in SEEDS:
        run = b.online_thompson(serve, b.CONTEXTS, np.ones(24), 4000, np.random.default_rng(seed))
        shares = b.best_share_by_block(run, best, 500)
        # 5 seeds: 0.39-0.44 of the first 500 sessions served the best arm, 0.90-0.95 of sessions 3,500-4,000
        assert shares[0] < 0.55 and shares[-1] >= 0.85 and shares[-1] > shares[0] + 0.3
        value = sum(strategy_value(*c.split("|"), a) for c, a in zip(run["context"], run["arm"]))
        uniform = sum(np.mean([strategy_value(*c.split("|"), a) for a in b.ARMS]) for c in run["context"])
        assert value > uniform * 1.2
        most = run.groupby("context")["arm"].agg(lambda x: x.value_counts().idxmax())
        assert (most == most.index.map(best)).sum() >= 22
