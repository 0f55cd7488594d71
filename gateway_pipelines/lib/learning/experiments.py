"""Experiments that finish: randomised A/B follow-ups of edges whose intervals are still wide.

The design is fixed when the experiment is created, before any observation (docs/learning.md):

* **Create.** An edge with ``ci_high - ci_low > max_ci_width`` and ``|uplift| >= min_uplift`` (or any
  wide edge when ``min_uplift`` is 0), A != B (the unit is B's first episode, which "A before A" has
  not got), and no experiment yet gets one in ``memory.causal_experiments``
  (``treatment_id`` = skill A, ``control_id`` = skill B), up to ``budget`` running at once. It starts
  at the current episode watermark: only sessions that begin later take part.
* **Assignment.** Each new session is assigned to an arm by a hash of (experiment id, session id)
  (:func:`assigned_treatment`, 50/50, deterministic): the agent runtime reads it and, in a treatment
  session, does A before B; in a control session, not. The simulator honours it
  (``GeneratorParams.interventions``). Randomisation is what makes a two-sample test causal: comparing
  sessions that happened to do A with those that did not is confounded (the agent's skill), and
  that comparison is the learner's job (AIPW), not the experiment's.
* **Pre-registered sample size (power analysis).** ``n_per_arm`` = the smallest n at which Welch's
  test at level ``alpha`` has power ``power`` against an effect of ``mde`` given the reward standard
  deviation of B (from the edge's evidence), at least ``min_per_arm``, at most ``max_per_arm``
  (the power at the cap is recorded when the cap binds).
* **Observe.** One observation per new session: its first episode of B (``memory.causal_observations``,
  ``is_treatment`` = the assigned arm, ``outcome_value`` = the reward, ``context.exposed`` = whether A
  really happened in the window before it). Intention to treat: the assigned arm is compared.
* **Complete, once.** The test runs a single time, when both arms have ``n_per_arm`` observations,
  on the first ``n_per_arm`` of each arm (by episode id): Welch's t-test (``scipy.stats``) gives the
  uplift, p-value and 95% interval. Stopping depends on counts only, never on the outcomes, so
  repeated nightly looks do not inflate the false-positive rate (each night asks "is n reached?",
  not "is p < alpha yet?"). Conclusion: ``effect`` (p < alpha), ``no_effect``, or
  ``not_honoured`` when fewer than ``min_compliance`` of the observations had the exposure their arm
  asks for (the agents ignored the assignment: the ITT contrast says nothing about A). The result is
  written back to the edge (``experiment_ids``, ``metadata.experiment``).
* **Terminate.** Past ``max_days`` without ``n_per_arm`` in each arm: status ``failed`` with the
  reason. So every experiment ends: by its n (at most ``max_per_arm``) or by its deadline.
  AgentDB's auto-experiments never record an observation and stay ``running`` forever.
"""

from __future__ import annotations

import hashlib
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

__all__ = ["ExperimentParams", "assigned_treatment", "conclude", "honoured_interventions", "observe_sessions",
           "required_per_arm", "run_experiments", "welch"]

DEFAULT_SD = 0.2  # reward sd assumed when the edge has no control-arm variance to go by


@dataclass(frozen=True)
class ExperimentParams:
    max_ci_width: float = 0.2
    min_uplift: float = 0.05
    budget: int = 10
    min_per_arm: int = 30  # floor of the pre-registered n (Welch's t needs a few dozen per arm)
    max_per_arm: int = 2000  # cap of the pre-registered n: an experiment cannot wait for ever
    max_days: int = 30
    window_minutes: float = 60.0
    mde: float = 0.1  # the minimum effect on the reward the experiment is powered to detect
    alpha: float = 0.05
    power: float = 0.8
    min_compliance: float = 0.9


def assigned_treatment(experiment_id: int, session_id: str) -> bool:
    """The arm of a session in an experiment: 50/50 from a hash, the same wherever it is asked."""
    digest = hashlib.blake2b(f"{int(experiment_id)}:{session_id}".encode(), digest_size=8).digest()
    return bool(digest[-1] & 1)


def welch_power(n_per_arm: int, sd: float, effect: float, alpha: float) -> float:
    """Power of the two-sided Welch test with equal arms and sds (the shifted-t approximation of the
    noncentral t, within 0.01 of it from a dozen per arm)."""
    from scipy import stats

    df = 2 * n_per_arm - 2
    nc = abs(effect) / (sd * math.sqrt(2 / n_per_arm))
    q = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.t.sf(q - nc, df) + stats.t.cdf(-q - nc, df))


def required_per_arm(sd: float, mde: float, alpha: float = 0.05, power: float = 0.8, floor: int = 2,
                     cap: int = 10 ** 6) -> int:
    """Smallest n per arm with Welch power >= ``power`` against ``mde`` (clamped to [floor, cap])."""
    from scipy import stats

    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(int(math.ceil(2 * (z * sd / mde) ** 2)), floor, 2)
    while n < cap and welch_power(n, sd, mde, alpha) < power:  # the normal formula is ~1 short
        n += 1
    return min(n, cap)


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


def observe_sessions(frame: pd.DataFrame, experiment_id: int, a: int, b: int, start_watermark: int,
                     window_minutes: float) -> list[dict]:
    """One observation per session that began after ``start_watermark``: its first episode of skill b.

    ``frame``: episodes with ``id, session_id, ts, skill, reward`` (whole sessions)."""
    df = frame.assign(t=epoch_seconds(frame["ts"])).sort_values(["session_id", "t", "id"], kind="stable")
    began = df.groupby("session_id", sort=False)["id"].min()
    fresh = set(began.index[began > start_watermark])  # sessions begun earlier were never assigned
    firsts = df[(df["skill"] == b) & df["session_id"].isin(fresh)].drop_duplicates("session_id", keep="first")
    if firsts.empty:
        return []
    pairs = firsts[["session_id", "id", "t"]].merge(df.loc[df["skill"] == a, ["session_id", "t"]],
                                                    on="session_id", suffixes=("", "_a"))
    hit = pairs[(pairs["t_a"] < pairs["t"]) & (pairs["t_a"] >= pairs["t"] - float(window_minutes) * 60)]
    exposed = set(hit["id"])
    return [{"episode_id": int(i), "session_id": str(sid), "is_treatment": assigned_treatment(experiment_id, str(sid)),
             "outcome": float(y), "exposed": int(i) in exposed}
            for i, sid, y in zip(firsts["id"], firsts["session_id"], firsts["reward"])]


def conclude(observations: list[dict], n_per_arm: int, alpha: float = 0.05,
             min_compliance: float = 0.9) -> dict | None:
    """The single test of an experiment, once both arms hold ``n_per_arm`` observations (else None)."""
    obs = sorted(observations, key=lambda o: o["episode_id"])
    treated = [o for o in obs if o["is_treatment"]][:n_per_arm]
    control = [o for o in obs if not o["is_treatment"]][:n_per_arm]
    if len(treated) < n_per_arm or len(control) < n_per_arm:
        return None
    res = welch(np.array([o["outcome"] for o in treated]), np.array([o["outcome"] for o in control]))
    used = treated + control
    compliance = float(np.mean([o["exposed"] == o["is_treatment"] for o in used]))
    if compliance < min_compliance:
        conclusion = "not_honoured"
    else:
        conclusion = "effect" if res["p_value"] < alpha else "no_effect"
    return {**res, "compliance": round(compliance, 4), "conclusion": conclusion, "alpha": alpha,
            "n_per_arm": n_per_arm}


def _edge_sd(aipw: dict | None) -> float:
    """Reward sd of B from the edge's evidence (control arm, else treated), for the power analysis."""
    d = aipw or {}
    n1, n = int(d.get("n_treated", 0)), int(d.get("n", 0))
    for k, s, s2 in ((n - n1, d.get("sum_y0", 0.0), d.get("sum_y0sq", 0.0)),
                     (n1, d.get("sum_y1", 0.0), d.get("sum_y1sq", 0.0))):
        if k >= 10:
            var = max(s2 - s * s / k, 0.0) / (k - 1)
            if var > 0:
                return math.sqrt(var)
    return DEFAULT_SD


def honoured_interventions(conn: psycopg.Connection) -> tuple[tuple[int, int, int], ...]:
    """The running experiments as the simulator's interventions (experiment id, family A, family B, task),
    for experiments whose skills are generated families (``generate_episodes(interventions=...)``)."""
    from gateway_pipelines.lib.learning.generator import FAMILIES
    from gateway_pipelines.lib.learning.learner import skill_families

    index = {f.key: i for i, f in enumerate(FAMILIES)}
    fams = skill_families(conn)
    names = dict(conn.execute("SELECT id, name FROM memory.skills").fetchall())
    out = []
    for exp_id, meta in conn.execute("SELECT id, metadata FROM memory.causal_experiments WHERE status = 'running' "
                                     "AND metadata ? 'edge_id' ORDER BY id").fetchall():
        a, b = int(meta["from_skill_id"]), int(meta["to_skill_id"])
        fa, fb = fams.get(a), fams.get(b)
        if fa in index and fb in index and fa != fb:  # A's episodes are inserted with A's own medoid task
            out.append((int(exp_id), index[fa], index[fb], names[a]))
    return tuple(out)


def _observe(conn: psycopg.Connection, exp_id: int, meta: dict, as_of: datetime) -> int:
    a, b = int(meta["from_skill_id"]), int(meta["to_skill_id"])
    # A and B are the tasks they held when the experiment was designed (a later consolidation may move
    # a wording to another skill), plus the wordings the skills have gained since
    skill_of = dict(conn.execute("SELECT task_hash, skill_id FROM memory.skill_tasks WHERE skill_id = ANY(%s)",
                                 ([a, b],)).fetchall())
    skill_of.update({h: b for h in meta.get("to_tasks", [])})
    skill_of.update({h: a for h in meta.get("from_tasks", [])})
    start = int(meta["start_watermark"])
    rows = conn.execute(
        "SELECT id, session_id, ts, task, reward FROM memory.episodes WHERE ts <= %s AND session_id IN "
        "(SELECT DISTINCT session_id FROM memory.episodes WHERE id > %s AND ts <= %s) ORDER BY session_id, ts, id",
        (as_of, start, as_of)).fetchall()
    if not rows:
        return 0
    df = pd.DataFrame(rows, columns=["id", "session_id", "ts", "task", "reward"])
    df["skill"] = df["task"].map(lambda t: skill_of.get(task_hash(t), -1))
    seen = {s for (s,) in conn.execute("SELECT context ->> 'session_id' FROM memory.causal_observations "
                                       "WHERE experiment_id = %s", (exp_id,))}
    obs = [o for o in observe_sessions(df, exp_id, a, b, start, float(meta.get("window_minutes", 60)))
           if o["session_id"] not in seen]  # a session is observed once (its first B when first seen)
    if not obs:
        return 0
    cur = conn.cursor()
    cur.executemany(
        "INSERT INTO memory.causal_observations (experiment_id, episode_id, is_treatment, outcome_value, outcome_type, "
        "context) VALUES (%s, %s, %s, %s, 'reward', %s) ON CONFLICT (experiment_id, episode_id) DO NOTHING",
        [(exp_id, o["episode_id"], o["is_treatment"], o["outcome"],
          Jsonb({"session_id": o["session_id"], "exposed": o["exposed"]})) for o in obs])
    return len(obs)


def _complete(conn: psycopg.Connection, exp_id: int, meta: dict, res: dict, as_of: datetime) -> None:
    conn.execute(
        "UPDATE memory.causal_experiments SET status = 'completed', end_time = %s, treatment_mean = %s, "
        "control_mean = %s, uplift = %s, p_value = %s, confidence_interval_low = %s, "
        "confidence_interval_high = %s, metadata = metadata || %s WHERE id = %s",
        (as_of, res["treatment_mean"], res["control_mean"], res["uplift"], res["p_value"], res["ci_low"],
         res["ci_high"], Jsonb({"test": "welch", "df": res["df"], "t": res["t"], "n_treated": res["n_treated"],
                                "n_control": res["n_control"], "compliance": res["compliance"],
                                "conclusion": res["conclusion"]}), exp_id))
    conn.execute(
        "UPDATE memory.causal_edges SET experiment_ids = CASE WHEN %(e)s = ANY(coalesce(experiment_ids, "
        "'{}')) THEN experiment_ids ELSE array_append(coalesce(experiment_ids, '{}'), %(e)s) END, "
        "metadata = metadata || jsonb_build_object('experiment', %(r)s::jsonb), updated_at = now() "
        "WHERE id = %(edge)s", {"e": str(exp_id), "r": Jsonb({**res, "experiment_id": exp_id,
                                                             "completed_at": as_of.isoformat()}),
                                "edge": int(meta["edge_id"])})


def run_experiments(conn: psycopg.Connection, as_of: datetime, params: ExperimentParams = ExperimentParams()) -> dict:
    """Observe and complete running experiments, then create new ones; commits."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEARNING_LOCK,))  # one writer at a time
    out = {"observations": 0, "completed": 0, "failed": 0, "created": 0, "results": []}
    # only the learner's own experiments (imported AgentDB ones have no edge, arms or deadline)
    running = conn.execute("SELECT id, metadata FROM memory.causal_experiments WHERE status = 'running' "
                           "AND metadata ? 'edge_id' ORDER BY id").fetchall()
    for exp_id, meta in running:
        out["observations"] += _observe(conn, exp_id, meta, as_of)
        rows = conn.execute("SELECT episode_id, is_treatment, outcome_value, coalesce((context ->> 'exposed')::bool, "
                            "is_treatment) FROM memory.causal_observations WHERE experiment_id = %s ORDER BY episode_id",
                            (exp_id,)).fetchall()
        conn.execute("UPDATE memory.causal_experiments SET sample_size = %s WHERE id = %s AND sample_size <> %s",
                     (len(rows), exp_id, len(rows)))
        n_per_arm = int(meta.get("n_per_arm", meta.get("min_per_arm", params.min_per_arm)))
        res = conclude([{"episode_id": e, "is_treatment": t, "outcome": y, "exposed": x} for e, t, y, x in rows],
                       n_per_arm, float(meta.get("alpha", params.alpha)),
                       float(meta.get("min_compliance", params.min_compliance)))
        if res is not None:
            _complete(conn, exp_id, meta, res, as_of)
            out["completed"] += 1
            out["results"].append({"experiment_id": exp_id, **res})
        elif as_of >= datetime.fromisoformat(meta["deadline"]):
            n_t = sum(1 for r in rows if r[1])
            conn.execute(
                "UPDATE memory.causal_experiments SET status = 'failed', end_time = %s, metadata = metadata || %s "
                "WHERE id = %s", (as_of, Jsonb({"reason": f"only {n_t} treated / {len(rows) - n_t} control "
                                                          f"observations by the deadline (need {n_per_arm} each)"}),
                                  exp_id))
            out["failed"] += 1
    n_running = conn.execute("SELECT count(*) FROM memory.causal_experiments WHERE status = 'running' "
                             "AND metadata ? 'edge_id'").fetchone()[0]
    room = max(params.budget - n_running, 0)
    if room:
        watermark = conn.execute("SELECT coalesce(max(id), 0) FROM memory.episodes WHERE ts <= %s",
                                 (as_of,)).fetchone()[0]
        candidates = conn.execute(
            "SELECT e.id, e.from_memory_id, e.to_memory_id, e.uplift, e.ci_high - e.ci_low AS width, e.mechanism, "
            "e.metadata -> 'aipw' FROM memory.causal_edges e WHERE e.metadata ->> 'method' = 'aipw-crossfit' "
            "AND e.from_memory_id <> e.to_memory_id AND e.ci_high - e.ci_low > %s AND abs(e.uplift) >= %s AND NOT EXISTS (SELECT 1 FROM "
            "memory.causal_experiments x WHERE x.metadata ->> 'edge_id' = e.id::text) ORDER BY width DESC, e.id LIMIT %s",
            (params.max_ci_width, params.min_uplift, room)).fetchall()
        for edge_id, a, b, uplift, width, mech, aipw in candidates:
            sd = _edge_sd(aipw)
            n_per_arm = required_per_arm(sd, params.mde, params.alpha, params.power, params.min_per_arm,
                                         params.max_per_arm)
            deadline = as_of + timedelta(days=params.max_days)
            tasks = {int(k): v for k, v in conn.execute(
                "SELECT skill_id, array_agg(task_hash ORDER BY task_hash) FROM memory.skill_tasks "
                "WHERE skill_id = ANY(%s) GROUP BY 1", ([int(a), int(b)],)).fetchall()}
            conn.execute(
                "INSERT INTO memory.causal_experiments (name, hypothesis, treatment_id, treatment_type, control_id, "
                "start_time, status, metadata, created_at) VALUES (%s, %s, %s, 'skill', %s, %s, 'running', %s, now())",
                (f"Follow-up: edge {edge_id}", f"{mech}: uplift {uplift:+.3f}, interval width {width:.3f}",
                 a, b, as_of, Jsonb({"edge_id": edge_id, "from_skill_id": int(a), "to_skill_id": int(b),
                                      "start_watermark": int(watermark), "deadline": deadline.isoformat(),
                                      "design": "randomised by session (assigned_treatment), first B episode "
                                                "of each new session, intention to treat",
                                      "n_per_arm": n_per_arm, "reward_sd": round(sd, 6), "mde": params.mde,
                                      "alpha": params.alpha, "power": params.power,
                                      "power_at_mde": round(welch_power(n_per_arm, sd, params.mde, params.alpha), 4),
                                      "min_compliance": params.min_compliance,
                                      "from_tasks": tasks.get(int(a), []), "to_tasks": tasks.get(int(b), []),
                                      "window_minutes": params.window_minutes, "outcome": "reward"})))
            out["created"] += 1
    conn.commit()
    return out
