"""Coverage of the simulator's planted effects by the DML intervals over 20 seeds (the issue's bar).

    .venv/bin/python bench/causal/coverage.py [--seeds 20] [--users 150] [--out bench/results/causal_coverage.json]

Per seed: a simulation of --users users × 14 days (synthetic catalogue), every feature × segment
estimated as the asset does (``estimate_all``), each interval scored against the stored truth. Prints,
per (feature, segment), the share of seeds whose DML interval covers the truth (goal ≥ 0.90) and the
naive OLS's share beside it; the mean bias of both on recommendation_rank (the confounded feature);
and the placebo's coverage of 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

GOAL = 0.90


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "causal_coverage.json"))
    args = parser.parse_args(argv)

    from gateway_pipelines.lib.learning.causal_weights import METHOD_NAIVE, CausalParams, estimate_all, prepare_sample
    from gateway_pipelines.lib.personalization.simulator import SimulationParams, simulate
    from gateway_pipelines.lib.personalization.synthetic import synthetic_catalogue

    catalogue = synthetic_catalogue(500, seed=3)
    dml_hits, naive_hits, seen = defaultdict(int), defaultdict(int), defaultdict(int)
    rank_dml, rank_naive, placebo, rows = [], [], [], []
    started = time.perf_counter()
    for seed in range(1, args.seeds + 1):
        sim = simulate(catalogue, SimulationParams(args.users, 14, seed, date(2026, 11, 30)))
        sample = prepare_sample(sim.impressions.merge(sim.outcomes, on="impression_id", how="left"))
        result = estimate_all(sample, CausalParams())
        truth = {(f, s): v for f, s, v, _ in sim.truth}
        for e in result.dml():
            key = (e.feature, e.segment)
            if key not in truth or not e.ok:
                continue
            seen[key] += 1
            dml_hits[key] += e.covers(truth[key])
            naive = result.get(e.feature, e.segment, METHOD_NAIVE)
            naive_hits[key] += bool(naive and naive.covers(truth[key]))
        rank_dml.append(result.get("recommendation_rank").effect)
        rank_naive.append(result.get("recommendation_rank", "all", METHOD_NAIVE).effect)
        placebo.append(bool(result.refutations.get("placebo_covers_zero")))
        rows.append(sample.used)
        print(f"seed {seed}: {sample.used} rows, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    per_cell = {f"{f}/{s}": {"dml": round(dml_hits[(f, s)] / n, 3), "naive": round(naive_hits[(f, s)] / n, 3),
                             "seeds": n} for (f, s), n in sorted(seen.items())}
    shares = [v["dml"] for v in per_cell.values()]
    report = {
        "seeds": args.seeds, "users": args.users, "mean_rows": round(sum(rows) / len(rows)),
        "cells": len(per_cell), "goal_per_cell": GOAL,
        "cells_meeting_goal": sum(s >= GOAL for s in shares),
        "min_cell_coverage": min(shares), "mean_dml_coverage": round(sum(shares) / len(shares), 4),
        "mean_naive_coverage": round(sum(v["naive"] for v in per_cell.values()) / len(per_cell), 4),
        "below_goal": {k: v for k, v in per_cell.items() if v["dml"] < GOAL},
        "rank_truth": -0.008, "rank_dml_mean": round(sum(rank_dml) / len(rank_dml), 5),
        "rank_naive_mean": round(sum(rank_naive) / len(rank_naive), 5),
        "placebo_covers_zero_share": round(sum(placebo) / len(placebo), 3),
        "seconds": round(time.perf_counter() - started, 1), "load_average": [round(x, 2) for x in os.getloadavg()],
        "per_cell": per_cell,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_cell"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
