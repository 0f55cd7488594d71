"""Offline evaluation: a time split, hit-rate@k and nDCG@k of the recommender against two baselines.

Per event source (the simulator, each ingested dataset):

* **split**: the source's events sorted by time; the cut is the ``train_share`` (0.8) quantile of
  their timestamps. Everything before is history, everything after is the future.
* **evaluated users**: at least ``min_train`` finished titles before the cut and at least one title
  finished after it that they had not finished before (the positives).
* **methods**, all fitted on the history only:
  - ``recommender``: preference vectors recomputed from the history with the production rule, the
    co-occurrence and popularity from the history, the production re-ranking and diversity rule;
  - ``popularity``: the most-finished titles of the history, minus the user's finished ones;
  - ``cooccurrence``: item-item co-occurrence with the user's finished titles (cosine-normalised
    co-finish counts), topped up with popularity when it has fewer than k.
* **metrics**: hit-rate@k (share of users with at least one positive in the top k) and nDCG@k with
  binary relevance, DCG = Σ 1/log2(rank + 1), normalised by the ideal DCG of min(k, #positives).
* **causal re-rank check** (when there are causal weights and the planted effects are known, i.e. on
  simulated data): per evaluated user, the top k by similarity alone (w_fused = w_pop = 0) against the
  same plus the bounded causal adjustment; metric ``expected_completion`` = the mean over the picks of
  Σ_f β_f(planted)·feature_f, the part of expected completion the ranking features move. Methods
  ``similarity_only`` and ``causal_rerank``; the re-rank should be the higher.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .catalogue import Catalogue
from .preference import compute_preferences, is_finished, prepare
from .recommender import RecommenderConfig, RecommenderModel, UserState, mean_rating

METHODS = ("recommender", "popularity", "cooccurrence")
METRICS = ("hit_rate", "ndcg")


@dataclass(frozen=True)
class EvalRow:
    source: str
    method: str
    metric: str
    k: int
    value: float
    n_users: int


@dataclass
class SourceEvaluation:
    source: str
    cutoff: float | None
    n_users: int
    n_events: int
    rows: list[EvalRow]

    def value(self, method: str, metric: str) -> float | None:
        return next((r.value for r in self.rows if r.method == method and r.metric == metric), None)

    def lift(self, metric: str = "hit_rate", over: str = "popularity") -> float | None:
        ours, base = self.value("recommender", metric), self.value(over, metric)
        if ours is None or base is None or base == 0:
            return None
        return ours / base - 1


def _ndcg(ranked: list[int], positives: set[int], k: int) -> float:
    dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in positives)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(positives))))
    return dcg / ideal if ideal else 0.0


def evaluate_source(events: pd.DataFrame, catalogue: Catalogue, source: str, *, k: int = 10,
                    train_share: float = 0.8, min_train: int = 3, config: RecommenderConfig = RecommenderConfig(),
                    causal_weights: dict | None = None, half_life_days: float | None = None,
                    max_users: int | None = None, true_effects: dict[str, float] | None = None) -> SourceEvaluation:
    frame = prepare(events, catalogue)
    if frame.empty:
        return SourceEvaluation(source, None, 0, 0, [])
    cutoff = float(np.quantile(frame["t"].to_numpy(), train_share))
    train = frame[frame["t"] < cutoff]
    test = frame[frame["t"] >= cutoff]
    fin_train = train[is_finished(train["event_type"].to_numpy(), train["completion"].to_numpy())]
    fin_test = test[is_finished(test["event_type"].to_numpy(), test["completion"].to_numpy())]
    history = fin_train.groupby("user_id")["item"].agg(lambda s: frozenset(s.tolist()))
    future = fin_test.groupby("user_id")["item"].agg(lambda s: set(s.tolist()))
    users = sorted(u for u in future.index if u in history.index and len(history[u]) >= min_train
                   and future[u] - history[u])
    if max_users is not None:
        users = users[:max_users]
    if not users:
        return SourceEvaluation(source, cutoff, 0, len(frame), [])
    prefs = compute_preferences(train[train["user_id"].isin(users)], catalogue, half_life_days=half_life_days,
                                prepared=True)
    row_of = prefs.index()
    pairs = list(zip(fin_train["user_id"].tolist(), fin_train["item"].tolist()))
    model = RecommenderModel(catalogue, pairs, causal_weights=causal_weights, config=config)
    baseline = RecommenderModel(catalogue, pairs, config=config)
    ratings = train.dropna(subset=["rating"]).groupby("user_id")["rating"].agg(list)
    pop_order = np.argsort(-baseline.finish_counts, kind="stable")
    scores = {m: {"hit_rate": [], "ndcg": []} for m in METHODS}
    for user in users:
        finished = history[user]
        positives = future[user] - finished
        r = row_of[user]
        state = UserState(user, prefs.vectors[r] if prefs.has_vector[r] else None, finished,
                          {int(g): float(a) for g, a in prefs.genre_affinities(r).items()},
                          mean_rating(ratings.get(user, [])))
        ranked = {
            "recommender": [p.item for p in model.recommend(state, k, explain=False).picks],
            "popularity": _top_excluding(pop_order, finished, k),
        }
        cands, _ = baseline.cooc_candidates(finished, k)
        co = [int(i) for i in cands.tolist()]
        if len(co) < k:
            co += [i for i in _top_excluding(pop_order, finished | set(co), k)][: k - len(co)]
        ranked["cooccurrence"] = co[:k]
        for method, items in ranked.items():
            scores[method]["hit_rate"].append(float(any(i in positives for i in items[:k])))
            scores[method]["ndcg"].append(_ndcg(items, positives, k))
    rows = [EvalRow(source, m, metric, k, float(np.mean(values)), len(users))
            for m in METHODS for metric, values in scores[m].items()]
    if true_effects and model.causal_weights:
        sim_only = replace(config, w_fused=0.0, w_pop=0.0)
        plain = RecommenderModel(catalogue, pairs, config=sim_only)
        causal = RecommenderModel(catalogue, pairs, causal_weights=causal_weights, config=sim_only)
        gains = {"similarity_only": [], "causal_rerank": []}
        for user in users:
            r = row_of[user]
            state = UserState(user, prefs.vectors[r] if prefs.has_vector[r] else None, history[user],
                              {int(g): float(a) for g, a in prefs.genre_affinities(r).items()},
                              mean_rating(ratings.get(user, [])))
            for name, m in (("similarity_only", plain), ("causal_rerank", causal)):
                picks = m.recommend(state, k, explain=False).picks
                gains[name].append(expected_completion(picks, true_effects))
        rows += [EvalRow(source, name, "expected_completion", k, float(np.mean(v)), len(users))
                 for name, v in gains.items()]
    return SourceEvaluation(source, cutoff, len(users), len(frame), rows)


def expected_completion(picks, effects: dict[str, float]) -> float:
    """Mean over the picks of Σ_f β_f·feature_f (the features the ranking can move)."""
    if not picks:
        return 0.0
    return float(np.mean([sum(b * p.features.get(f, 0.0) for f, b in effects.items() if f in p.features)
                          for p in picks]))


def _top_excluding(order: np.ndarray, exclude, k: int) -> list[int]:
    out = []
    for i in order.tolist():
        if i not in exclude:
            out.append(i)
            if len(out) == k:
                break
    return out


def evaluation_table_md(results: list[SourceEvaluation]) -> str:
    lines = ["| source | users | method | hit-rate@k | nDCG@k |", "|---|---:|---|---:|---:|"]
    for res in results:
        for method in METHODS:
            hr, nd = res.value(method, "hit_rate"), res.value(method, "ndcg")
            if hr is None:
                continue
            lines.append(f"| {res.source} | {res.n_users} | {method} | {hr:.3f} | {nd:.3f} |")
    return "\n".join(lines)


def evaluation_plot_png(results: list[SourceEvaluation], k: int = 10) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    width = 0.8 / len(METHODS)
    for ax, metric in zip(axes, METRICS):
        for j, method in enumerate(METHODS):
            values = [r.value(method, metric) or 0 for r in shown]
            ax.bar(np.arange(len(shown)) + j * width, values, width, label=method)
        ax.set_xticks(np.arange(len(shown)) + width)
        ax.set_xticklabels([f"{r.source}\n(n={r.n_users})" for r in shown], fontsize=7)
        ax.set_title(f"{'hit-rate' if metric == 'hit_rate' else 'nDCG'}@{k}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Offline evaluation (time split): recommender vs baselines", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
