"""Benchmark: skill consolidation and the causal-edge learner at 100k and 1M episodes.

    .venv/bin/python bench/learning/run.py [--sizes 100000,1000000] [--out bench/results/learning.json]

Each size runs in its own process (so peak RSS is that size's), on the in-memory library path the
assets use: the clustering plan (embedding the distinct tasks, clustering, stats, TF-IDF keywords,
pitfalls) and the AIPW learner over every pair of skills (cross-fitted, 5 folds). The database
round trip (COPY in, upserts) is not included. Goal: each step <= 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 300.0


def one(n: int) -> dict:
    import numpy as np

    from gateway_pipelines.lib.learning.aipw import estimate_pairs
    from gateway_pipelines.lib.learning.consolidation import ConsolidationParams, plan_skills
    from gateway_pipelines.lib.learning.embedding import TaskEmbedder, normalize_task, task_hash
    from gateway_pipelines.lib.learning.generator import generate_episodes

    t0 = time.perf_counter()
    g = generate_episodes(seed=1, n_sessions=max(int(n / 6.5), 10))
    df = g.episodes.iloc[:n].copy()
    df["id"] = np.arange(1, len(df) + 1)
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    distinct = sorted({normalize_task(t) for t in df["task"]})
    emb = TaskEmbedder.fit(distinct)
    vecs = dict(zip((task_hash(t) for t in distinct), emb.embed(distinct)))
    plans, labels = plan_skills(df, vecs, ConsolidationParams())
    consolidation_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    df["cluster"] = labels
    evidence, info = estimate_pairs(df, ["agent_level"], min_arm=20)
    learner_s = time.perf_counter() - t0
    from gateway_pipelines.lib.learning.clustering import adjusted_rand

    return {
        "episodes": len(df), "distinct_tasks": len(distinct), "skills": len(plans),
        "ari": round(adjusted_rand(df["family"], labels), 4),
        "generate_s": round(gen_s, 1),
        "consolidation_s": round(consolidation_s, 1), "consolidation_goal_s": GOAL_S,
        "learner_s": round(learner_s, 1), "learner_goal_s": GOAL_S,
        "cluster_pairs_evaluated": info["pairs_evaluated"], "episode_pairs": info["episode_pairs"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "learning.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "2"}, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        results.append(row)
    report = {"cores": os.cpu_count(), "results": results}
    if len(results) >= 2:
        a, b = results[0], results[-1]
        scale = b["episodes"] / a["episodes"]
        report["scaling"] = {k: round(b[k] / a[k], 2) if a[k] else None for k in ("consolidation_s", "learner_s")}
        report["scaling"]["episodes_ratio"] = scale
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report.get("scaling", {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
