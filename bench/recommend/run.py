"""Recommend latency and preference-vector rebuild throughput, in process (no database).

    .venv/bin/python bench/recommend/run.py [--titles 100000] [--users 1000] [--events 1000000]

* **recommend**: p50/p95 of `RecommenderModel.recommend(k=20, explain=True)` for 1,000 users over a
  synthetic 100k-title catalogue (768-d clustered unit vectors), with co-occurrence built from
  50 finished titles per user. The content candidates come from an in-process IVF index (k-means
  cells, 12 probed) standing in for pgvector's HNSW, whose own latency at 100k is in
  bench/vector; everything else is the production code path. Goal: p95 ≤ 20 ms.
* **rebuild**: `compute_preferences` over `--events` events (5 % impressions/clicks, the rest watches)
  of 10k users, in time order, from a DataFrame as `fct_watch_events` reads back. Goal ≥ 200k events/s.

Prints one JSON document on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from gateway_pipelines.lib.personalization.preference import compute_preferences
from gateway_pipelines.lib.personalization.recommender import RecommenderModel, UserState
from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue

GOAL_P95_MS = 20.0
GOAL_EVENTS_PER_S = 200_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class IVF:
    """Coarse k-means cells; a query scans the vectors of its `probe` nearest cells exactly."""

    def __init__(self, vectors: np.ndarray, cells: int = 316, probe: int = 12, seed: int = 0):
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=cells, batch_size=4096, n_init=1, random_state=seed, max_iter=20)
        sample = np.random.default_rng(seed).choice(len(vectors), min(len(vectors), 20_000), replace=False)
        km.fit(vectors[sample])  # fit the cells on a sample, assign every vector
        labels = km.predict(vectors)
        self.centres = km.cluster_centers_.astype(np.float32)
        self.members = [np.flatnonzero(labels == c) for c in range(cells)]
        self.vectors = vectors
        self.probe = probe

    def __call__(self, q: np.ndarray, n: int, exclude: frozenset[int]):
        cells = np.argpartition(-(self.centres @ q), self.probe)[: self.probe]
        ids = np.concatenate([self.members[c] for c in cells])
        sims = self.vectors[ids] @ q
        top = np.argsort(-sims)[: n + len(exclude)]
        keep = [i for i in top if ids[i] not in exclude][:n]
        return ids[keep], sims[keep]


def bench_recommend(n_titles: int, n_users: int, k: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    log(f"catalogue: {n_titles} titles")
    catalogue = synthetic_catalogue(n_titles, clusters=300, seed=seed)
    started = time.perf_counter()
    ann = IVF(catalogue.vectors, seed=seed)
    log(f"IVF built in {time.perf_counter() - started:.1f}s")
    cells = ann.members
    finished: dict[str, frozenset[int]] = {}
    for u in range(n_users):
        home = [c for c in rng.choice(len(cells), 3, replace=False) if len(cells[c])]
        pool = np.concatenate([cells[c] for c in home])
        finished[f"u{u}"] = frozenset(int(i) for i in rng.choice(pool, min(50, len(pool)), replace=False))
    pairs = [(u, i) for u, items in finished.items() for i in items]
    started = time.perf_counter()
    model = RecommenderModel(catalogue, pairs)
    build_s = time.perf_counter() - started
    states = []
    for u, items in finished.items():
        v = catalogue.vectors[sorted(items)].mean(axis=0)
        states.append(UserState(u, v / np.linalg.norm(v), items))
    for state in states[:20]:  # warm-up
        model.recommend(state, k, ann=ann)
    latencies, plain = [], []
    for state in states:
        t = time.perf_counter()
        rec = model.recommend(state, k, ann=ann)
        latencies.append((time.perf_counter() - t) * 1000)
        assert len(rec.picks) == k
    for state in states[:200]:
        t = time.perf_counter()
        model.recommend(state, k, ann=ann, explain=False)
        plain.append((time.perf_counter() - t) * 1000)
    cold = []
    for u in range(100):
        t = time.perf_counter()
        model.recommend(UserState(f"new{u}"), k)
        cold.append((time.perf_counter() - t) * 1000)
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95))
    return {
        "titles": n_titles, "users": n_users, "k": k, "model_build_s": round(build_s, 2),
        "p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "goal_p95_ms": GOAL_P95_MS, "meets_goal": p95 <= GOAL_P95_MS,
        "p95_ms_without_explanations": round(float(np.percentile(plain, 95)), 2),
        "cold_start_p95_ms": round(float(np.percentile(cold, 95)), 2),
        "ann": "in-process IVF (316 cells, 12 probed) standing in for pgvector HNSW",
    }


def bench_rebuild(n_events: int, n_users: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    catalogue = synthetic_catalogue(20_000, clusters=100, seed=seed)
    types = rng.choice(["play", "complete", "rate", "impression", "click", "dismiss"], n_events,
                       p=[0.55, 0.2, 0.2, 0.03, 0.015, 0.005])
    frame = pd.DataFrame({
        "event_id": np.char.add("e", np.arange(n_events).astype(str)),
        "user_id": np.char.add("u", rng.integers(0, n_users, n_events).astype(str)),
        "content_key": np.array(catalogue.keys)[rng.integers(0, len(catalogue), n_events)],
        "event_type": types,
        "completion": np.where(types == "rate", np.nan, rng.random(n_events)),
        "rating": np.where(types == "rate", rng.integers(1, 11, n_events).astype(float), np.nan),
        "duration_s": rng.random(n_events) * 6000, "total_duration_s": np.full(n_events, 6000.0),
        "is_rewatch": rng.random(n_events) < 0.05,
        "ts": 1.7e9 + rng.random(n_events) * 86400 * 90,
    })
    log(f"rebuild: {n_events} events, {n_users} users")
    started = time.perf_counter()
    prefs = compute_preferences(frame, catalogue)
    seconds = time.perf_counter() - started
    rate = n_events / seconds
    return {"events": n_events, "users": len(prefs.users), "seconds": round(seconds, 2),
            "events_per_s": round(rate), "goal_events_per_s": GOAL_EVENTS_PER_S, "meets_goal": rate >= GOAL_EVENTS_PER_S}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--titles", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    result = {"recommend": bench_recommend(args.titles, args.users, args.k, args.seed),
              "rebuild": bench_rebuild(args.events, 10_000, args.seed)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
