"""Benchmark: skill consolidation and the causal-edge learner at 100k and 1M episodes.

    .venv/bin/python bench/learning/run.py [--sizes 100000,1000000] [--modes compute,db]
                                           [--out bench/results/learning.json]

Each size and mode runs in its own process (so peak RSS is that run's):

* ``compute``: the in-memory library path (the clustering plan: embedding the distinct tasks,
  clustering, stats, TF-IDF keywords, pitfalls; the AIPW learner over every pair of skills,
  cross-fitted, 5 folds), no database.
* ``db``: what the assets do, against the embedded Postgres (a fresh server and database per run):
  the generated episodes COPY'd into memory.episodes (``store_generated``, timed apart as the set-up),
  then ``consolidate()`` (reads the window, embeds, writes skills, skill_tasks, links, runs) and
  ``learn_edges()`` (reads the batch's sessions, AIPW, writes cells and edges), each timed end to end;
  the learner's own split (read / compute / write) is printed beside it, and the round trip of each
  step = its db time - its compute-mode time. Peak RSS is the Python process's (the Postgres server's
  memory is its own, reported as shared_buffers).

Goal: each step (consolidation, learner) <= 5 minutes on 2 cores at 1M episodes, db mode included.
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


def one_db(n: int) -> dict:
    import tempfile
    from datetime import datetime, timezone

    home = Path(tempfile.mkdtemp(prefix="gw-bench-learning-"))
    os.environ["GATEWAY_HOME"] = str(home)
    os.environ.pop("DATABASE_URL", None)
    import psycopg
    from psycopg import sql

    from gateway_pipelines.lib.learning.consolidation import consolidate
    from gateway_pipelines.lib.learning.embedding import TaskEmbedder
    from gateway_pipelines.lib.learning.episodes import store_generated
    from gateway_pipelines.lib.learning.generator import generate_episodes
    from gateway_pipelines.lib.learning.learner import learn_edges
    from gateway_pipelines.lib.migrations import apply_migrations
    from gateway_pipelines.lib.warehouse import connect, with_database
    from gateway_pipelines.runtime.instance import warehouse_urls
    from gateway_pipelines.settings import SQL_DIR

    base = with_database(warehouse_urls().warehouse, "postgres")
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("bench_learning")))
    url = with_database(base, "bench_learning")
    with connect(url) as conn:
        apply_migrations(conn, SQL_DIR)
    t0 = time.perf_counter()
    g = generate_episodes(seed=1, n_sessions=max(int(n / 6.5), 10))
    gen_s = time.perf_counter() - t0
    as_of = datetime(2026, 7, 1, tzinfo=timezone.utc)
    with connect(url) as conn:
        t0 = time.perf_counter()
        loaded = store_generated(conn, g)
        load_s = time.perf_counter() - t0
        conn.execute("ANALYZE memory.episodes")
        conn.commit()
        shared_buffers = conn.execute("SELECT current_setting('shared_buffers')").fetchone()[0]
        t0 = time.perf_counter()
        cons = consolidate(conn, lambda tasks: TaskEmbedder.load_or_fit(home / "models", tasks), as_of, "bench")
        consolidation_s = time.perf_counter() - t0
        rss_after_consolidation = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        learned = learn_edges(conn, as_of)
        learner_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rerun = learn_edges(conn, as_of)  # nothing new: what a night without episodes costs
        rerun_s = time.perf_counter() - t0
    return {
        "mode": "db", "episodes": loaded["inserted"], "generate_s": round(gen_s, 1), "copy_load_s": round(load_s, 1),
        "consolidation_s": round(consolidation_s, 1), "consolidation_goal_s": GOAL_S, "skills": len(cons.skills),
        "ari": cons.ground_truth["ari"] if cons.ground_truth else None,
        "learner_s": round(learner_s, 1), "learner_goal_s": GOAL_S, "learner_split": learned.timings,
        "edges": len(learned.edges), "episode_pairs": learned.episode_pairs,
        "coverage_planted": (learned.ground_truth or {}).get("planted_coverage"),
        "learner_rerun_nothing_new_s": round(rerun_s, 2), "rerun_changed_rows": rerun.edges_updated,
        "peak_rss_mb_after_consolidation": round(rss_after_consolidation, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "postgres_shared_buffers": shared_buffers,
    }


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--modes", default="compute,db")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "learning.json"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    if args.db:
        print(json.dumps(one_db(args.db)))
        return 0
    results = []
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for n in (int(s) for s in args.sizes.split(",")):
        for mode in modes:
            flag = "--one" if mode == "compute" else "--db"
            load_before = _load()
            out = subprocess.run([sys.executable, __file__, flag, str(n)], capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "2"}, check=True)
            row = {"mode": "compute", "size": n, **json.loads(out.stdout.strip().splitlines()[-1]),
                   "loadavg_before": load_before, "loadavg_after": _load()}
            print(json.dumps(row), flush=True)
            results.append(row)
    report = {"cores": os.cpu_count(), "goal": "consolidation and learner each <= 300 s at 1M episodes, db mode",
              "results": results}
    for mode in modes:
        rows = [r for r in results if r["mode"] == mode]
        if len(rows) >= 2:
            a, b = rows[0], rows[-1]
            report[f"scaling_{mode}"] = {k: round(b[k] / a[k], 2) if a[k] else None
                                         for k in ("consolidation_s", "learner_s")}
            report[f"scaling_{mode}"]["episodes_ratio"] = round(b["episodes"] / a["episodes"], 2)
    # the round trip is a difference of two runs: meaningful only when both ran at the same load
    for n in sorted({r["size"] for r in results}):
        pair = {r["mode"]: r for r in results if r["size"] == n}
        if {"compute", "db"} <= pair.keys():
            report.setdefault("round_trip_s", {})[str(n)] = {
                k: round(pair["db"][k] - pair["compute"][k], 1) for k in ("consolidation_s", "learner_s")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
