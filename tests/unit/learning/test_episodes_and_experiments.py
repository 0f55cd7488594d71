"""JSONL lines are quarantined with line and reason; Welch's test is scipy's."""

import json

import numpy as np
import pytest
from scipy import stats

from gateway_pipelines.lib.learning.episodes import parse_jsonl
from gateway_pipelines.lib.learning.experiments import welch

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
