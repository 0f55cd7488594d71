"""Experiments that finish: A/B follow-ups of edges whose intervals are still wide.

* **Create.** An edge with ``ci_high - ci_low > max_ci_width`` and ``|uplift| >= min_uplift`` (or
  any wide edge when ``min_uplift`` is 0) and no experiment yet gets one in
  ``memory.causal_experiments`` (``treatment_id`` = skill A, ``control_id`` = skill B, the outcome),
  up to ``budget`` running at once. It starts at the current episode watermark: only episodes that
  arrive later are observed.
* **Observe.** Every new episode of skill B becomes one observation (``memory.causal_observations``,
  unique per experiment and episode): ``is_treatment`` = its session had an episode of A in the
  window before it, ``outcome_value`` = its reward.
* **Complete.** With ``min_per_arm`` observations in each arm: Welch's t-test (``scipy.stats``, the
  true Student t with Welch-Satterthwaite degrees of freedom) gives the uplift, p-value and 95%
  interval; status ``completed``; the result is written back to the edge (``experiment_ids``,
  ``metadata.experiment``). Past ``max_days`` without enough evidence: status ``failed`` with the
  reason. AgentDB's auto-experiments never record an observation and stay ``running`` forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from gateway_pipelines.lib.learning.aipw import epoch_seconds
from gateway_pipelines.lib.learning.consolidation import LEARNING_LOCK
from gateway_pipelines.lib.learning.embedding import task_hash

__all__ = ["ExperimentParams", "run_experiments", "welch"]


@dataclass(frozen=True)
class ExperimentParams:
    max_ci_width: float = 0.2
    min_uplift: float = 0.05
    budget: int = 10
    min_per_arm: int = 30
    max_days: int = 30
    window_minutes: float = 60.0


def welch(treated: np.ndarray, control: np.ndarray) -> dict:
    from scipy import stats

    t, c = np.asarray(treated, float), np.asarray(control, float)
    res = stats.ttest_ind(t, c, equal_var=False)
    v1, v0 = t.var(ddof=1) / len(t), c.var(ddof=1) / len(c)
    se = math.sqrt(v1 + v0)
    df = (v1 + v0) ** 2 / (v1 ** 2 / (len(t) - 1) + v0 ** 2 / (len(c) - 1)) if se > 0 else len(t) + len(c) - 2
    diff = float(t.mean() - c.mean())
    q = float(stats.t.ppf(0.975, df))
    return {"treatment_mean": float(t.mean()), "control_mean": float(c.mean()), "uplift": diff,
            "p_value": float(res.pvalue) if not math.isnan(res.pvalue) else 1.0, "t": float(res.statistic),
            "df": float(df), "ci_low": diff - q * se, "ci_high": diff + q * se, "n_treated": len(t),
            "n_control": len(c)}


def _observe(conn: psycopg.Connection, exp_id: int, meta: dict, as_of: datetime) -> int:
    a, b = int(meta["from_skill_id"]), int(meta["to_skill_id"])
    skill_of = dict(conn.execute("SELECT task_hash, skill_id FROM memory.skill_tasks WHERE skill_id = ANY(%s)",
                                 ([a, b],)).fetchall())
    rows = conn.execute(
        "SELECT id, session_id, ts, task, reward FROM memory.episodes WHERE ts <= %s AND session_id IN "
        "(SELECT DISTINCT session_id FROM memory.episodes WHERE id > %s AND ts <= %s) ORDER BY session_id, ts, id",
        (as_of, int(meta["start_watermark"]), as_of)).fetchall()
    if not rows:
        return 0
    df = pd.DataFrame(rows, columns=["id", "session_id", "ts", "task", "reward"])
    df["skill"] = df["task"].map(lambda t: skill_of.get(task_hash(t), -1))
    df["t"] = epoch_seconds(df["ts"])
    window = float(meta.get("window_minutes", 60)) * 60
    obs = []
    for _, g in df.groupby("session_id", sort=True):
        times_a = g.loc[g["skill"] == a, "t"].to_numpy()
        for r in g[(g["skill"] == b) & (g["id"] > int(meta["start_watermark"]))].itertuples():
            treated = bool(((times_a < r.t) & (times_a >= r.t - window)).any())
            obs.append((exp_id, int(r.id), treated, float(r.reward)))
    if not obs:
        return 0
    cur = conn.cursor()
    cur.executemany(
        "INSERT INTO memory.causal_observations (experiment_id, episode_id, is_treatment, outcome_value, outcome_type, "
        "context) VALUES (%s, %s, %s, %s, 'reward', '{}') ON CONFLICT (experiment_id, episode_id) DO NOTHING", obs)
    return len(obs)


def run_experiments(conn: psycopg.Connection, as_of: datetime, params: ExperimentParams = ExperimentParams()) -> dict:
    """Observe and complete running experiments, then create new ones; commits."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEARNING_LOCK,))  # one writer at a time
    out = {"observations": 0, "completed": 0, "failed": 0, "created": 0, "results": []}
    # only the learner's own experiments (imported AgentDB ones have no edge, arms or deadline)
    running = conn.execute("SELECT id, metadata FROM memory.causal_experiments WHERE status = 'running' "
                           "AND metadata ? 'edge_id' ORDER BY id").fetchall()
    for exp_id, meta in running:
        before = conn.execute("SELECT count(*) FROM memory.causal_observations WHERE experiment_id = %s",
                              (exp_id,)).fetchone()[0]
        _observe(conn, exp_id, meta, as_of)
        rows = conn.execute("SELECT is_treatment, outcome_value FROM memory.causal_observations "
                            "WHERE experiment_id = %s ORDER BY episode_id", (exp_id,)).fetchall()
        out["observations"] += len(rows) - before
        t = np.array([v for is_t, v in rows if is_t])
        c = np.array([v for is_t, v in rows if not is_t])
        conn.execute("UPDATE memory.causal_experiments SET sample_size = %s WHERE id = %s AND sample_size <> %s",
                     (len(rows), exp_id, len(rows)))
        if len(t) >= params.min_per_arm and len(c) >= params.min_per_arm:
            res = welch(t, c)
            conn.execute(
                "UPDATE memory.causal_experiments SET status = 'completed', end_time = %s, treatment_mean = %s, "
                "control_mean = %s, uplift = %s, p_value = %s, confidence_interval_low = %s, "
                "confidence_interval_high = %s, metadata = metadata || %s WHERE id = %s",
                (as_of, res["treatment_mean"], res["control_mean"], res["uplift"], res["p_value"], res["ci_low"],
                 res["ci_high"], Jsonb({"test": "welch", "df": res["df"], "t": res["t"],
                                        "n_treated": res["n_treated"], "n_control": res["n_control"]}), exp_id))
            conn.execute(
                "UPDATE memory.causal_edges SET experiment_ids = CASE WHEN %(e)s = ANY(coalesce(experiment_ids, "
                "'{}')) THEN experiment_ids ELSE array_append(coalesce(experiment_ids, '{}'), %(e)s) END, "
                "metadata = metadata || jsonb_build_object('experiment', %(r)s::jsonb), updated_at = now() "
                "WHERE id = %(edge)s", {"e": str(exp_id), "r": Jsonb({**res, "experiment_id": exp_id,
                                                                     "completed_at": as_of.isoformat()}),
                                        "edge": int(meta["edge_id"])})
            out["completed"] += 1
            out["results"].append({"experiment_id": exp_id, **res})
        elif as_of >= datetime.fromisoformat(meta["deadline"]):
            conn.execute(
                "UPDATE memory.causal_experiments SET status = 'failed', end_time = %s, metadata = metadata || %s "
                "WHERE id = %s", (as_of, Jsonb({"reason": f"only {len(t)} treated / {len(c)} control observations by "
                                                          f"the deadline (need {params.min_per_arm} each)"}), exp_id))
            out["failed"] += 1
    n_running = conn.execute("SELECT count(*) FROM memory.causal_experiments WHERE status = 'running' "
                             "AND metadata ? 'edge_id'").fetchone()[0]
    room = max(params.budget - n_running, 0)
    if room:
        watermark = conn.execute("SELECT coalesce(max(id), 0) FROM memory.episodes WHERE ts <= %s",
                                 (as_of,)).fetchone()[0]
        candidates = conn.execute(
            "SELECT e.id, e.from_memory_id, e.to_memory_id, e.uplift, e.ci_high - e.ci_low AS width, e.mechanism "
            "FROM memory.causal_edges e WHERE e.metadata ->> 'method' = 'aipw-crossfit' AND e.ci_high - e.ci_low > %s "
            "AND abs(e.uplift) >= %s AND NOT EXISTS (SELECT 1 FROM memory.causal_experiments x "
            "WHERE x.metadata ->> 'edge_id' = e.id::text) ORDER BY width DESC, e.id LIMIT %s",
            (params.max_ci_width, params.min_uplift, room)).fetchall()
        for edge_id, a, b, uplift, width, mech in candidates:
            deadline = as_of + timedelta(days=params.max_days)
            conn.execute(
                "INSERT INTO memory.causal_experiments (name, hypothesis, treatment_id, treatment_type, control_id, "
                "start_time, status, metadata, created_at) VALUES (%s, %s, %s, 'skill', %s, %s, 'running', %s, now())",
                (f"Follow-up: edge {edge_id}", f"{mech}: uplift {uplift:+.3f}, interval width {width:.3f}",
                 a, b, as_of, Jsonb({"edge_id": edge_id, "from_skill_id": int(a), "to_skill_id": int(b),
                                      "start_watermark": int(watermark), "deadline": deadline.isoformat(),
                                      "min_per_arm": params.min_per_arm, "window_minutes": params.window_minutes,
                                      "outcome": "reward"})))
            out["created"] += 1
    conn.commit()
    return out
