"""The causal-edge learner: incremental AIPW evidence per pair of skills, one edge per pair.

* Watermark: ``memory.learner_state['causal_edges'].watermark`` = the highest episode id whose
  evidence is in the edges. A run takes the episodes above it (with ``ts <= as_of``) as new units,
  reads their whole sessions for the exposures, cross-fits AIPW within that batch
  (:func:`~gateway_pipelines.lib.learning.aipw.estimate_pairs`) and adds the scores' sufficient
  statistics to each edge: every pair is evaluated, however many there are, and nothing is counted
  twice. A batch smaller than ``min_batch_units`` waits for the next run (the watermark stays).
* Edge = (skill A -> skill B), ``from/to_memory_type = 'skill'``. ``uplift`` = the AIPW estimate,
  ``ci_low/ci_high`` its 95% interval, ``std_error``, ``p_value``, ``sample_size`` = units,
  ``last_validated_at`` = the as-of time of the last batch that added evidence.
* Confidence = ``(1 - p) * 0.5 ** (days since last_validated_at / half_life_days)``: it decays while
  no new evidence arrives, instead of AgentDB's delete-by-age. Everything is a function of ``as_of``,
  so rerunning a partition writes the same values (and so changes no row).
* Verdict: ``causal`` when p < alpha, |uplift| >= min_uplift and confidence >= min_confidence
  (AgentDB's gates 0.05 and 0.6); ``no_effect`` when the whole interval lies inside +-min_uplift;
  else ``inconclusive``. The naive difference of means is kept beside it in ``metadata.naive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from gateway_pipelines.lib.learning.aipw import PairStats, estimate_pairs
from gateway_pipelines.lib.learning.consolidation import LEARNING_LOCK
from gateway_pipelines.lib.learning.embedding import task_hash

__all__ = ["LearnerParams", "LearnerResult", "learn_edges", "verdict_of"]

STATE = "causal_edges"


@dataclass(frozen=True)
class LearnerParams:
    window_minutes: float = 60.0
    folds: int = 5
    min_arm: int = 20
    min_batch_units: int = 200
    alpha: float = 0.05
    min_uplift: float = 0.05
    min_confidence: float = 0.6
    half_life_days: float = 30.0
    covariates: tuple[str, ...] | None = None  # None: numeric metadata keys on >= 95% of the episodes


@dataclass
class LearnerResult:
    as_of: datetime
    watermark_before: int
    watermark_after: int
    new_units: int
    batch_processed: bool
    pairs_evaluated: int
    episode_pairs: int
    pairs_skipped: int
    edges_created: int
    edges_updated: int
    covariates: list[str]
    edges: list[dict] = field(default_factory=list)
    ground_truth: dict | None = None


def verdict_of(stats: PairStats, confidence: float, p: LearnerParams) -> str:
    lo, hi = stats.ci
    if stats.p_value < p.alpha and abs(stats.tau) >= p.min_uplift and confidence >= p.min_confidence:
        return "causal"
    if -p.min_uplift < lo and hi < p.min_uplift:
        return "no_effect"
    return "inconclusive"


def decay(as_of: datetime, validated: datetime | None, half_life_days: float) -> float:
    if validated is None:
        return 1.0
    days = max((as_of - validated).total_seconds() / 86400, 0.0)
    return 0.5 ** (days / half_life_days)


def _covariates(meta: pd.Series, share: float = 0.95) -> list[str]:
    counts: dict[str, int] = {}
    for m in meta:
        for k, v in (m or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                counts[k] = counts.get(k, 0) + 1
    return sorted(k for k, c in counts.items() if c >= share * len(meta))


def _r(x, nd=6):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def _row_values(stats: PairStats, naive: dict, conf: float, verdict: str, base_meta: dict) -> dict:
    lo, hi = stats.ci
    meta = {**base_meta, "aipw": stats.to_json(), "naive": {k: _r(v) for k, v in naive.items()},
            "n_treated": stats.n_treated, "n_control": stats.n_control,
            "naive_verdict": "causal" if naive["p_value"] is not None and naive["p_value"] < 0.05
            and abs(naive["uplift"]) >= 0.05 else "not_causal"}
    return {"uplift": _r(stats.tau), "ci_low": _r(lo), "ci_high": _r(hi), "std_error": _r(stats.se),
            "p_value": _r(stats.p_value, 8), "confidence": _r(conf), "sample_size": stats.n, "verdict": verdict,
            "metadata": meta}


def learn_edges(conn: psycopg.Connection, as_of: datetime, params: LearnerParams = LearnerParams()) -> LearnerResult:
    """One learner run as of ``as_of``; commits."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEARNING_LOCK,))  # one writer at a time
    row = conn.execute("SELECT watermark FROM memory.learner_state WHERE name = %s", (STATE,)).fetchone()
    watermark = int(row[0]) if row else 0
    new_max, new_n = conn.execute(
        "SELECT max(id), count(*) FROM memory.episodes WHERE id > %s AND ts <= %s", (watermark, as_of)).fetchone()
    skill_tasks = dict(conn.execute("SELECT task_hash, skill_id FROM memory.skill_tasks").fetchall())
    names = dict(conn.execute("SELECT id, name FROM memory.skills").fetchall())
    result = LearnerResult(as_of, watermark, watermark, int(new_n), False, 0, 0, 0, 0, 0, [])
    evidence = []
    frame = pd.DataFrame()
    if new_n and new_n >= params.min_batch_units and skill_tasks:
        rows = conn.execute(
            "SELECT e.id, e.session_id, e.ts, e.task, e.reward, e.metadata FROM memory.episodes e "
            "WHERE e.ts <= %s AND e.session_id IN (SELECT DISTINCT session_id FROM memory.episodes "
            "WHERE id > %s AND id <= %s AND ts <= %s) ORDER BY e.session_id, e.ts, e.id",
            (as_of, watermark, new_max, as_of)).fetchall()
        frame = pd.DataFrame(rows, columns=["id", "session_id", "ts", "task", "reward", "metadata"])
        tasks = pd.Series(frame["task"].unique())
        skill_of_task = dict(zip(tasks, tasks.map(lambda t: skill_tasks.get(task_hash(t), -1))))
        frame["skill_id"] = frame["task"].map(skill_of_task).astype(int)
        skills = sorted(s for s in frame["skill_id"].unique() if s >= 0)
        index = {s: i for i, s in enumerate(skills)}
        frame["cluster"] = frame["skill_id"].map(lambda s: index.get(s, -1))
        # session covariates: numeric metadata keys of the episodes that belong to a skill (episodes of
        # other sources in the same scan, e.g. imported AgentDB ones outside the window, do not vote)
        covs = (list(params.covariates) if params.covariates is not None
                else _covariates(frame.loc[frame["cluster"] >= 0, "metadata"]))
        for c in covs:
            frame[c] = [float((m or {}).get(c, np.nan)) if isinstance((m or {}).get(c), (int, float)) else np.nan
                        for m in frame["metadata"]]
        frame["family"] = [((m or {}).get("generator") or {}).get("family") for m in frame["metadata"]]
        units = (frame["id"] > watermark) & (frame["id"] <= new_max)
        evidence, info = estimate_pairs(frame, covs, window_minutes=params.window_minutes, folds=params.folds,
                                        min_arm=params.min_arm, units_mask=units.to_numpy())
        result.covariates = covs
        result.batch_processed = True
        result.watermark_after = int(new_max)
        result.pairs_evaluated, result.episode_pairs = info["pairs_evaluated"], info["episode_pairs"]
        result.pairs_skipped = info["pairs_skipped"]
        result.new_units = info["units"]
        evidence = [(skills[e.from_cluster], skills[e.to_cluster], e) for e in evidence]

    existing = {(int(f), int(t)): r for f, t, *r in conn.execute(
        "SELECT from_memory_id, to_memory_id, id, metadata, last_validated_at, uplift, ci_low, ci_high, std_error, "
        "p_value, confidence, sample_size, verdict, evidence_ids FROM memory.causal_edges "
        "WHERE from_memory_type = 'skill' AND to_memory_type = 'skill' AND metadata ->> 'method' = 'aipw-crossfit'"
    ).fetchall()}
    fresh = {(a, b): e for a, b, e in evidence}
    for key in sorted(set(existing) | set(fresh)):
        a, b = key
        old = existing.get(key)
        stats = PairStats.from_json((old[1] or {}).get("aipw")) if old else PairStats()
        validated = old[2] if old else None
        evidence_ids = list(old[11] or []) if old else []
        if key in fresh:
            ev = fresh[key]
            stats = stats.add(ev.stats)
            validated = as_of
            evidence_ids = sorted(set(evidence_ids) | {str(i) for i in ev.evidence_ids}, key=int)[-50:]
        if stats.n == 0:
            continue
        conf = (1 - stats.p_value) * decay(as_of, validated, params.half_life_days)
        verdict = verdict_of(stats, conf, params)
        base = {"method": "aipw-crossfit", "folds": params.folds, "window_minutes": params.window_minutes,
                "from_skill": names.get(a), "to_skill": names.get(b), "covariates": (old[1] or {}).get(
                    "covariates") if old and key not in fresh else result.covariates,
                **({k: (old[1] or {})[k] for k in ("experiment",) if old and k in (old[1] or {})})}
        vals = _row_values(stats, stats.naive(), conf, verdict, base)
        mechanism = f"{names.get(a, a)} -> {names.get(b, b)} (AIPW, cross-fitted, {params.window_minutes:g} min)"
        if old is None:
            conn.execute(
                "INSERT INTO memory.causal_edges (from_memory_id, from_memory_type, to_memory_id, to_memory_type, "
                "similarity, uplift, confidence, ci_low, ci_high, sample_size, evidence_ids, mechanism, metadata, "
                "last_validated_at, verdict, p_value, std_error) VALUES (%s, 'skill', %s, 'skill', 0, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (from_memory_type, from_memory_id, to_memory_type, to_memory_id) DO NOTHING",
                (str(a), str(b), vals["uplift"], vals["confidence"], vals["ci_low"], vals["ci_high"],
                 vals["sample_size"], evidence_ids, mechanism, Jsonb(vals["metadata"]), validated, verdict,
                 vals["p_value"], vals["std_error"]))
            result.edges_created += 1
        else:
            cur = conn.execute(
                "UPDATE memory.causal_edges SET uplift = %(uplift)s, confidence = %(confidence)s, ci_low = %(ci_low)s, "
                "ci_high = %(ci_high)s, sample_size = %(sample_size)s, evidence_ids = %(ev)s, mechanism = %(mech)s, "
                "metadata = %(meta)s, last_validated_at = %(validated)s, verdict = %(verdict)s, "
                "p_value = %(p_value)s, std_error = %(std_error)s, updated_at = now() WHERE id = %(id)s AND "
                "(uplift, confidence, ci_low, ci_high, sample_size, evidence_ids, mechanism, metadata, "
                "last_validated_at, verdict, p_value, std_error) IS DISTINCT FROM (%(uplift)s, %(confidence)s, "
                "%(ci_low)s, %(ci_high)s, %(sample_size)s, %(ev)s::text[], %(mech)s, %(meta)s, "
                "%(validated)s::timestamptz, %(verdict)s, %(p_value)s, %(std_error)s)",
                {**vals, "ev": evidence_ids, "mech": mechanism, "meta": Jsonb(vals["metadata"]),
                 "validated": validated, "id": old[0]})
            result.edges_updated += cur.rowcount
        lo, hi = stats.ci
        result.edges.append({"from": a, "to": b, "from_name": names.get(a), "to_name": names.get(b),
                             "uplift": stats.tau, "ci_low": lo, "ci_high": hi, "p_value": stats.p_value,
                             "confidence": conf, "verdict": verdict, "n": stats.n,
                             "naive": stats.naive()["uplift"], "naive_p": stats.naive()["p_value"]})
    if result.batch_processed:
        conn.execute(
            "INSERT INTO memory.learner_state (name, watermark, metadata) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark, metadata = excluded.metadata, "
            "updated_at = now()", (STATE, result.watermark_after, Jsonb({"as_of": as_of.isoformat()})))
    result.ground_truth = ground_truth(conn, result.edges, params)
    conn.commit()
    return result


def skill_families(conn: psycopg.Connection) -> dict[int, str]:
    """Majority generator family of each skill (only for generated episodes)."""
    rows = conn.execute(
        "SELECT s.id, e.metadata -> 'generator' ->> 'family' AS fam, count(*) FROM memory.skills s "
        "CROSS JOIN LATERAL unnest(s.created_from_episodes) AS ep(id) JOIN memory.episodes e ON e.id = ep.id "
        "WHERE e.metadata ? 'generator' GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2").fetchall()
    out: dict[int, str] = {}
    for sid, fam, _ in rows:
        out.setdefault(int(sid), fam)
    return out


def ground_truth(conn: psycopg.Connection, edges: list[dict], params: LearnerParams) -> dict | None:
    fams = skill_families(conn)
    if not fams or not edges:
        return None
    truths = [t for (t,) in conn.execute("SELECT truth FROM memory.generated_sets ORDER BY created_at, set_id")]
    planted, confounded = {}, set()
    for t in truths:
        for e in t.get("planted_effects", []):
            planted[(e["from"], e["to"])] = float(e["effect"])
        if t.get("confounded_pair"):
            confounded.add((t["confounded_pair"]["from"], t["confounded_pair"]["to"]))
    cover, null_rej, conf_rows, found = [], [], [], []
    for e in edges:
        key = (fams.get(e["from"]), fams.get(e["to"]))
        if None in key:
            continue
        truth = planted.get(key, 0.0)
        inside = e["ci_low"] <= truth <= e["ci_high"]
        if key in planted:
            cover.append(inside)
            found.append({"pair": f"{key[0]} -> {key[1]}", "truth": truth, "uplift": round(e["uplift"], 4),
                          "ci": [round(e["ci_low"], 4), round(e["ci_high"], 4)], "verdict": e["verdict"]})
        else:
            null_rej.append(not (e["ci_low"] <= 0 <= e["ci_high"]))
        if key in confounded:
            conf_rows.append({"pair": f"{key[0]} -> {key[1]}", "aipw": round(e["uplift"], 4),
                              "aipw_verdict": e["verdict"], "naive": None if e["naive"] is None else round(e["naive"], 4),
                              "naive_p": e["naive_p"]})
    return {
        "planted_coverage": round(float(np.mean(cover)), 4) if cover else None,
        "planted_found": found,
        "null_pairs": len(null_rej),
        "null_rejection_rate": round(float(np.mean(null_rej)), 4) if null_rej else None,
        "confounded": conf_rows,
    }


def edges_markdown(edges: list[dict], top: int = 15) -> str:
    lines = ["| from | to | uplift | 95% CI | p | confidence | n | verdict | naive |",
             "|---|---|---|---|---|---|---|---|---|"]
    for e in sorted(edges, key=lambda e: (-abs(e["uplift"]) * e["confidence"], e["from"], e["to"]))[:top]:
        naive = "-" if e["naive"] is None else f"{e['naive']:+.3f}"
        lines.append(f"| {str(e['from_name'])[:40]} | {str(e['to_name'])[:40]} | {e['uplift']:+.3f} | "
                     f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}] | {e['p_value']:.3g} | {e['confidence']:.2f} | "
                     f"{e['n']} | {e['verdict']} | {naive} |")
    return "\n".join(lines)


def forest_plot_png(edges: list[dict], truth: dict | None = None, top: int = 25) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(edges, key=lambda e: (-abs(e["uplift"]), e["from"], e["to"]))[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.2), dpi=90)
    for i, e in enumerate(rows):
        color = {"causal": "tab:red", "no_effect": "tab:green"}.get(e["verdict"], "tab:gray")
        ax.plot([e["ci_low"], e["ci_high"]], [i, i], color=color, lw=2)
        ax.plot([e["uplift"]], [i], "o", color=color)
        if e["naive"] is not None:
            ax.plot([e["naive"]], [i], "x", color="black", ms=5)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{str(e['from_name'])[:22]} -> {str(e['to_name'])[:22]}" for e in rows], fontsize=6)
    ax.set_xlabel("effect on reward (AIPW, 95% CI; x = naive difference of means)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
