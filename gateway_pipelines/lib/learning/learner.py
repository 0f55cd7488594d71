"""The causal-edge learner: incremental AIPW evidence per pair of skills, one edge per pair.

* Watermark and batches: ``memory.learner_state['causal_edges'].watermark`` = the highest episode id
  whose evidence is in the edges. The sessions of the episodes above it (``ts <= as_of``) that no
  batch has counted form a new batch (``memory.learner_sessions``, batch id = the new watermark); the
  AIPW scores are cross-fitted within a batch (:func:`~gateway_pipelines.lib.learning.aipw.estimate_pairs`)
  and kept per (batch, A, B) as sufficient statistics (``memory.causal_edge_cells``). Every pair is
  evaluated, however many there are. A batch smaller than ``min_batch_units`` waits (the watermark stays).
* Late episodes: a new episode of a session that a batch already counted re-opens that batch's pairs
  (*, B) for every skill B it touches (its own, and those of the session's later episodes, whose
  exposures and positions moved), recomputed from source; a consolidation that moved a task of a
  batch to another skill recomputes that batch. An edge is the sum of its cells, so the incremental
  result equals ``learn_edges(..., full_recompute=True)`` (every cell from source), and nothing is
  counted twice.
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

import hashlib
import math
import time
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
    batches_computed: int = 0  # batches whose cells this run (re)computed from source
    batches_reopened: int = 0  # earlier batches re-opened by late episodes of their sessions
    batches_remapped: int = 0  # earlier batches recomputed because consolidation moved one of their tasks
    late_episodes: int = 0  # new episodes of sessions an earlier batch had counted
    cells_written: int = 0
    timings: dict = field(default_factory=dict)  # read_s (episodes), compute_s (AIPW), write_s, total_s


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


def _batch_frame(conn: psycopg.Connection, batch_id: int, as_of: datetime) -> pd.DataFrame:
    rows = conn.execute(
        "SELECT e.id, e.session_id, e.ts, e.task, e.reward, e.metadata FROM memory.episodes e "
        "JOIN memory.learner_sessions s ON s.session_id = e.session_id WHERE s.batch_id = %s AND e.ts <= %s "
        "ORDER BY e.session_id, e.ts, e.id", (batch_id, as_of)).fetchall()
    return pd.DataFrame(rows, columns=["id", "session_id", "ts", "task", "reward", "metadata"])


def _fingerprints(conn: psycopg.Connection, skill_tasks: dict[str, int]) -> dict[str, str]:
    """Per batch, a hash of the skill of every task its sessions hold."""
    per: dict[str, list[str]] = {}
    for batch, task in conn.execute(
            "SELECT s.batch_id, e.task FROM memory.episodes e JOIN memory.learner_sessions s "
            "ON s.session_id = e.session_id GROUP BY 1, 2"):
        h = task_hash(task)
        per.setdefault(str(batch), []).append(f"{h}:{skill_tasks.get(h, -1)}")
    return {b: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()[:16] for b, v in per.items()}


def _touched(frame: pd.DataFrame, watermark: int, new_max: int) -> set[int]:
    """Skills whose units a batch's new episodes change: the new episodes' own, and every episode after
    the first new one of its session (its exposures and position moved)."""
    new = frame[(frame["id"] > watermark) & (frame["id"] <= new_max)]
    first = new.groupby("session_id")["ts"].min()
    later = frame[frame["session_id"].isin(first.index)]
    later = later[later["ts"] >= later["session_id"].map(first)]
    return {int(s) for s in later["skill_id"] if s >= 0}


def _cells(conn: psycopg.Connection) -> dict[tuple[int, int], list]:
    out: dict[tuple[int, int], list] = {}
    for a, b, batch, stats, pairs, ev, covs, validated in conn.execute(
            "SELECT from_skill_id, to_skill_id, batch_id, stats, episode_pairs, evidence_ids, covariates, "
            "validated_at FROM memory.causal_edge_cells ORDER BY from_skill_id, to_skill_id, batch_id"):
        out.setdefault((int(a), int(b)), []).append((batch, PairStats.from_json(stats), pairs, ev, covs, validated))
    return out


def _write_cells(conn: psycopg.Connection, batch_id: int, to_skills: list[int], evidence: list, covs: list[str],
                 as_of: datetime) -> int:
    """Replace a batch's cells of pairs (*, B) for B in ``to_skills``; unchanged cells keep their row
    (and validated_at), so a recompute that finds the same figures writes nothing."""
    old = {(int(a), int(b)): (st, cv) for a, b, st, cv in conn.execute(
        "SELECT from_skill_id, to_skill_id, stats, covariates FROM memory.causal_edge_cells "
        "WHERE batch_id = %s AND to_skill_id = ANY(%s)", (batch_id, to_skills)).fetchall()}
    changed = 0
    fresh = set()
    for a, b, ev in evidence:
        fresh.add((a, b))
        stats = ev.stats.to_json()
        if (a, b) in old and old[(a, b)] == (stats, covs):
            continue
        conn.execute(
            "INSERT INTO memory.causal_edge_cells (batch_id, from_skill_id, to_skill_id, stats, episode_pairs, "
            "evidence_ids, covariates, validated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (batch_id, from_skill_id, to_skill_id) DO UPDATE SET stats = excluded.stats, "
            "episode_pairs = excluded.episode_pairs, evidence_ids = excluded.evidence_ids, "
            "covariates = excluded.covariates, validated_at = excluded.validated_at",
            (batch_id, a, b, Jsonb(stats), ev.n_pairs, ev.evidence_ids, covs, as_of))
        changed += 1
    gone = [k for k in old if k not in fresh]  # the pair no longer has min_arm units either way
    for a, b in gone:
        conn.execute("DELETE FROM memory.causal_edge_cells WHERE batch_id = %s AND from_skill_id = %s "
                     "AND to_skill_id = %s", (batch_id, a, b))
    return changed + len(gone)


def learn_edges(conn: psycopg.Connection, as_of: datetime, params: LearnerParams = LearnerParams(),
                full_recompute: bool = False) -> LearnerResult:
    """One learner run as of ``as_of``; commits.

    Sessions belong to the batch that first counted them (``memory.learner_sessions``). New sessions
    above the watermark form a new batch; new episodes of sessions already counted (late arrivals, or
    a session that went on) re-open their batch's pairs (*, B) for every B they touch, recomputed from
    source. An edge is the sum of its cells, so the result is a function of the episodes and of the
    batches alone: ``full_recompute=True`` (every cell from source) gives the same rows."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEARNING_LOCK,))  # one writer at a time
    started = time.perf_counter()
    row = conn.execute("SELECT watermark, metadata FROM memory.learner_state WHERE name = %s", (STATE,)).fetchone()
    watermark = int(row[0]) if row else 0
    stored_prints = dict((row[1] or {}).get("batch_mappings", {})) if row else {}
    new_max, new_n = conn.execute(
        "SELECT max(id), count(*) FROM memory.episodes WHERE id > %s AND ts <= %s", (watermark, as_of)).fetchone()
    skill_tasks = dict(conn.execute("SELECT task_hash, skill_id FROM memory.skill_tasks").fetchall())
    names = dict(conn.execute("SELECT id, name FROM memory.skills").fetchall())
    result = LearnerResult(as_of, watermark, watermark, int(new_n), False, 0, 0, 0, 0, 0, [])
    timings = {"read_s": 0.0, "compute_s": 0.0, "write_s": 0.0}
    take_new = bool(new_n and new_n >= params.min_batch_units)
    prints: dict[str, str] = {}
    if skill_tasks:
        if watermark and conn.execute("SELECT NOT EXISTS (SELECT 1 FROM memory.learner_sessions)").fetchone()[0]:
            # evidence pooled before batches were recorded (sql/019): its sessions become one batch, and
            # every cell is computed from source once
            conn.execute("INSERT INTO memory.learner_sessions (session_id, batch_id) SELECT DISTINCT session_id, %s "
                         "FROM memory.episodes WHERE id <= %s ON CONFLICT DO NOTHING", (watermark, watermark))
            full_recompute = True
        new_max = int(new_max or watermark) if take_new else watermark
        sessions = [s for (s,) in conn.execute(
            "SELECT DISTINCT session_id FROM memory.episodes WHERE id > %s AND id <= %s AND ts <= %s",
            (watermark, new_max, as_of))] if take_new else []
        known = dict(conn.execute("SELECT session_id, batch_id FROM memory.learner_sessions "
                                  "WHERE session_id = ANY(%s)", (sessions,)).fetchall()) if sessions else {}
        fresh = [s for s in sessions if s not in known]
        if fresh:
            conn.cursor().executemany("INSERT INTO memory.learner_sessions (session_id, batch_id) VALUES (%s, %s) "
                                      "ON CONFLICT DO NOTHING", [(s, new_max) for s in fresh])
        # a consolidation that moved a task to another skill changes every cell of a batch holding it
        prints = _fingerprints(conn, skill_tasks)
        remapped = {int(b) for b, fp in prints.items() if stored_prints.get(b) not in (None, fp)}
        if full_recompute:
            batches = {int(b) for (b,) in conn.execute("SELECT DISTINCT batch_id FROM memory.learner_sessions")}
        else:
            batches = set(known.values()) | ({new_max} if fresh else set()) | remapped
        result.batches_reopened = len(set(known.values()) - {new_max})
        result.batches_remapped = len(remapped)
        result.late_episodes = int(conn.execute(
            "SELECT count(*) FROM memory.episodes WHERE id > %s AND id <= %s AND ts <= %s AND session_id = ANY(%s)",
            (watermark, new_max, as_of, list(known))).fetchone()[0]) if known else 0
    else:
        batches = set()
    if batches:
        all_skills = sorted({int(v) for v in skill_tasks.values()})
        index = {s: i for i, s in enumerate(all_skills)}  # fixed columns: a cell is a function of its units
        stored_covs = {int(b): list(c) for b, c in conn.execute(
            "SELECT DISTINCT ON (batch_id) batch_id, covariates FROM memory.causal_edge_cells ORDER BY batch_id")}
        for batch_id in sorted(batches):
            t0 = time.perf_counter()
            frame = _batch_frame(conn, batch_id, as_of)
            timings["read_s"] += time.perf_counter() - t0
            if frame.empty:
                continue
            t0 = time.perf_counter()
            tasks = pd.Series(frame["task"].unique())
            skill_of_task = dict(zip(tasks, tasks.map(lambda t: skill_tasks.get(task_hash(t), -1))))
            frame["skill_id"] = frame["task"].map(skill_of_task).astype(int)
            frame["cluster"] = frame["skill_id"].map(lambda s: index.get(s, -1))
            # session covariates: numeric metadata keys of the episodes that belong to a skill (episodes of
            # other sources in the same scan, e.g. imported AgentDB ones outside the window, do not vote)
            covs = (list(params.covariates) if params.covariates is not None
                    else _covariates(frame.loc[frame["cluster"] >= 0, "metadata"]))
            for c in covs:
                frame[c] = [float((m or {}).get(c, np.nan)) if isinstance((m or {}).get(c), (int, float)) else np.nan
                            for m in frame["metadata"]]
            reopened = (batch_id != new_max and not full_recompute and batch_id not in remapped
                        and stored_covs.get(batch_id) == covs)
            touched = _touched(frame, watermark, new_max) if reopened else None
            to_clusters = None if touched is None else {index[s] for s in touched}
            evidence, info = estimate_pairs(frame, covs, window_minutes=params.window_minutes, folds=params.folds,
                                            min_arm=params.min_arm, to_clusters=to_clusters,
                                            n_clusters=len(all_skills))
            timings["compute_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            to_skills = all_skills if touched is None else sorted(touched)
            result.cells_written += _write_cells(
                conn, batch_id, to_skills,
                [(all_skills[e.from_cluster], all_skills[e.to_cluster], e) for e in evidence], covs, as_of)
            timings["write_s"] += time.perf_counter() - t0
            result.covariates = covs
            result.pairs_evaluated += info["pairs_evaluated"]
            result.episode_pairs += info["episode_pairs"]
            result.pairs_skipped += info["pairs_skipped"]
            result.batches_computed += 1
        result.batch_processed = True
        result.watermark_after = new_max
        result.new_units = int(new_n) if take_new else 0

    t0 = time.perf_counter()
    existing = {(int(f), int(t)): r for f, t, *r in conn.execute(
        "SELECT from_memory_id, to_memory_id, id, metadata, last_validated_at, uplift, ci_low, ci_high, std_error, "
        "p_value, confidence, sample_size, verdict, evidence_ids FROM memory.causal_edges "
        "WHERE from_memory_type = 'skill' AND to_memory_type = 'skill' AND metadata ->> 'method' = 'aipw-crossfit'"
    ).fetchall()}
    cells = _cells(conn)
    for key in sorted(set(existing) | set(cells)):
        a, b = key
        old = existing.get(key)
        parts = cells.get(key, [])
        if parts:
            stats = PairStats()
            for _, st, *_ in parts:
                stats = stats.add(st)
            validated = max(p[5] for p in parts)
            evidence_ids = sorted({str(i) for p in parts for i in (p[3] or [])}, key=int)[-50:]
        else:  # its cells were dropped (a recompute left too few units): the last figures, decaying
            stats = PairStats.from_json((old[1] or {}).get("aipw"))
            validated, evidence_ids = old[2], list(old[11] or [])
            parts = [(None, stats, (old[1] or {}).get("episode_pairs", 0), None, (old[1] or {}).get("covariates"),
                      validated)]
        if stats.n == 0:
            continue
        conf = (1 - stats.p_value) * decay(as_of, validated, params.half_life_days)
        verdict = verdict_of(stats, conf, params)
        base = {"method": "aipw-crossfit", "folds": params.folds, "window_minutes": params.window_minutes,
                "from_skill": names.get(a), "to_skill": names.get(b), "covariates": list(parts[-1][4] or []),
                "cells": len(cells.get(key, [])), "episode_pairs": int(sum(p[2] or 0 for p in parts)),
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
            "updated_at = now()", (STATE, result.watermark_after, Jsonb({"as_of": as_of.isoformat(),
                                                                       "batch_mappings": prints})))
    timings["write_s"] += time.perf_counter() - t0
    result.ground_truth = ground_truth(conn, result.edges, params)
    conn.commit()
    result.timings = {k: round(v, 3) for k, v in {**timings, "total_s": time.perf_counter() - started}.items()}
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
