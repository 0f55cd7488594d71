"""JSONL lines are quarantined with line and reason; Welch's test is scipy's; randomised experiments with a
pre-registered n conclude "effect" at their claimed power and keep false positives at alpha, over seeds."""

import json

import numpy as np
import pytest
from scipy import stats

from gateway_pipelines.lib.learning.episodes import parse_jsonl
from gateway_pipelines.lib.learning.experiments import (
    assigned_treatment,
    conclude,
    observe_sessions,
    required_per_arm,
    welch,
    welch_power,
)

GOOD = {"session_id": "s1", "task": "fix the login tests", "reward": 0.8, "success": True, "ts": 1780000000,
        "output": "done", "critique": "ok", "latency_ms": 1200, "tokens_used": 300, "tags": ["a"], "metadata": {}}


def test_bad_lines_are_quarantined_with_their_line_number_and_reason(tmp_path):
    path = tmp_path / "episodes.jsonl"
    lines = [json.dumps(GOOD), "{not json", json.dumps({**GOOD, "reward": 1.7}), "",
             json.dumps({**GOOD, "task": ""}), json.dumps({**GOOD, "ts": None}), json.dumps([1, 2]),
             json.dumps({**GOOD, "success": "yes"}), json.dumps({**GOOD, "ts": "2026-05-01T10:00:00Z"}),
             json.dumps(GOOD)]
    path.write_text("\n".join(lines) + "\n")
    frame, rejects, read = parse_jsonl(path)
    assert read == 9  # the blank line is not a record
    reasons = {line: reason for line, reason, _ in rejects}
    assert set(reasons) == {2, 3, 5, 6, 7, 8}
    assert "invalid JSON" in reasons[2] and "outside [0, 1]" in reasons[3] and "task" in reasons[5]
    assert "ts is missing" in reasons[6] and "JSON object" in reasons[7] and "success" in reasons[8]
    assert len(frame) == 3 and read == len(frame) + len(rejects)
    # the same record twice has the same key: the loader counts the second as a duplicate
    assert frame["source_key"].nunique() == 2


def test_welch_matches_scipy_with_a_student_t_interval():
    rng = np.random.default_rng(0)
    t, c = rng.normal(0.6, 0.1, 40), rng.normal(0.5, 0.2, 60)
    res = welch(t, c)
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert res["p_value"] == pytest.approx(ref.pvalue) and res["t"] == pytest.approx(ref.statistic)
    assert res["ci_low"] < res["uplift"] < res["ci_high"]
    half = (res["ci_high"] - res["ci_low"]) / 2
    se = np.sqrt(t.var(ddof=1) / 40 + c.var(ddof=1) / 60)
    assert half == pytest.approx(stats.t.ppf(0.975, res["df"]) * se)


# ---------------------------------------------------------------- experiments against planted truth
PLANTED = {(0, 1): 0.15, (2, 3): 0.12, (4, 5): 0.10}
# two sets per seed, four experiments each on disjoint families: the planted pairs and the confounded
# one (6 -> 7, no effect), then four null pairs the other way round
DESIGNS = (((0, 1), (2, 3), (4, 5), (6, 7)), ((1, 0), (3, 2), (5, 4), (7, 6)))
EXP_SEEDS = range(1, 9)


def _frame(gen):
    df = gen.episodes.copy()
    df["id"] = np.arange(1, len(df) + 1)
    df["skill"] = df["family"].map({k: i for i, k in enumerate(gen.truth["families"])})
    return df


@pytest.fixture(scope="module")
def experiments():
    from gateway_pipelines.lib.learning.generator import generate_episodes

    pilot = generate_episodes(seed=999, n_sessions=300)
    keys = list(pilot.truth["families"])
    sd = pilot.episodes.groupby("family")["reward"].std()  # the pre-registration's variance: no peeking
    out = []
    for seed in EXP_SEEDS:
        for d, pairs in enumerate(DESIGNS):
            ivs = tuple((1000 * seed + 10 * d + k, a, b) for k, (a, b) in enumerate(pairs))
            df = _frame(generate_episodes(seed=seed, n_sessions=240, interventions=ivs))
            for exp_id, a, b in ivs:
                n = required_per_arm(sd[keys[b]], mde=0.1, alpha=0.05, power=0.8, floor=30)
                obs = observe_sessions(df, exp_id, a, b, 0, 60)
                out.append(((a, b), n, obs, conclude(obs, n)))
    return pilot, out


@pytest.mark.slow
def test_randomised_experiments_finish_with_the_claimed_power_and_nominal_false_positives(experiments):
    _, runs = experiments
    assert all(res is not None for *_, res in runs)  # every experiment reached its pre-registered n
    assert all(res["compliance"] == 1.0 for *_, res in runs)  # the simulated agents honoured the arms
    power = [res["conclusion"] == "effect" for pair, *_, res in runs if pair in PLANTED]
    nulls = [res["conclusion"] == "effect" for pair, *_, res in runs if pair not in PLANTED]
    assert len(power) == 24 and len(nulls) == 40
    assert np.mean(power) >= 0.8, np.mean(power)  # powered at 0.8 for an effect of 0.10; planted 0.10-0.15
    assert np.mean(nulls) <= 0.05, np.mean(nulls)  # alpha 0.05; the confounded pair included
    for pair, _, _, res in runs:
        if pair in PLANTED:  # the interval is Welch's on the reward scale: around the planted delta
            assert res["ci_low"] - 0.05 <= PLANTED[pair] <= res["ci_high"] + 0.05


def test_the_single_look_ignores_later_observations_and_unhonoured_arms_are_flagged(experiments):
    pilot, runs = experiments
    pair, n, obs, res = runs[0]
    assert len(obs) > 2 * n  # more arrived than the design needs: later nights must not change the result
    first = sorted(obs, key=lambda o: o["episode_id"])
    used = [o for o in first if o["is_treatment"]][:n] + [o for o in first if not o["is_treatment"]][:n]
    cutoff = max(o["episode_id"] for o in used)
    assert conclude([o for o in obs if o["episode_id"] <= cutoff], n) == res
    assert conclude([o for o in obs if o["episode_id"] < cutoff], n) is None  # one short: still running
    assert res["n_treated"] == res["n_control"] == n
    # agents that ignore the assignment (no interventions): arms are labels, the contrast says nothing
    # about A: the experiment says so instead of reporting "no effect"
    obs = observe_sessions(_frame(pilot), 1, 6, 7, 0, 60)
    unhonoured = conclude(obs, 30)
    assert unhonoured["conclusion"] == "not_honoured" and unhonoured["compliance"] < 0.9


def test_the_pre_registered_n_has_the_power_it_claims():
    n = required_per_arm(0.15, 0.1, 0.05, 0.8)
    assert 30 <= n <= 40 and welch_power(n, 0.15, 0.1, 0.05) >= 0.8 > welch_power(n - 1, 0.15, 0.1, 0.05)
    assert required_per_arm(0.15, 0.1, floor=50) == 50 and required_per_arm(0.5, 0.01, cap=2000) == 2000
    # the arm of a session is a function of the experiment and the session only, and about 50/50
    arms = [assigned_treatment(7, f"s{i}") for i in range(4000)]
    assert arms == [assigned_treatment(7, f"s{i}") for i in range(4000)] and 0.47 < np.mean(arms) < 0.53
    assert arms != [assigned_treatment(8, f"s{i}") for i in range(4000)]
