"""`gateway` commands of the learning domain.

    gateway learn [--only ASSET,...] [--window-days N] [--date YYYY-MM-DD]   nightly learning now, through Dagster
    gateway skills [--search TEXT] [--k 10] [--all]     skills ranked by AgentDB's retrieval score, with pitfalls
    gateway simulate-episodes [--sessions N] [--families K] [--seed S] [--days D] [--end-date YYYY-MM-DD]
                                                        generate episodes with planted truth (through Dagster)
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

NIGHTLY_ASSETS = ("skills", "causal_edges", "causal_experiments")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_learn(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _run_sequence
    from gateway_pipelines.runtime.runner import JobStep

    only = [a.strip() for a in (args.only or "").split(",") if a.strip()]
    unknown = [a for a in only if a not in NIGHTLY_ASSETS]
    if unknown:
        return _error(f"--only: unknown asset(s) {', '.join(unknown)}; choose from {', '.join(NIGHTLY_ASSETS)}")
    if args.window_days is not None and args.window_days < 1:
        return _error(f"--window-days must be at least 1, got {args.window_days}")
    partition = "latest"
    if args.date:
        try:
            partition = date.fromisoformat(args.date).isoformat()
        except ValueError:
            return _error(f"--date {args.date!r} is not YYYY-MM-DD")
    config = {"ops": {"skills": {"config": {"window_days": args.window_days}}}} if args.window_days else None
    if not only or set(only) == set(NIGHTLY_ASSETS):
        steps = (JobStep("nightly_learning_job", partition, config),)
    else:
        steps = tuple(JobStep(f"learning_{a}_job", partition, config if a == "skills" else None)
                      for a in NIGHTLY_ASSETS if a in only)
    return _run_sequence(steps, log_level="INFO")


def cmd_simulate_episodes(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _run_sequence
    from gateway_pipelines.lib.learning.generator import FAMILIES
    from gateway_pipelines.runtime.runner import JobStep

    if args.sessions < 1:
        return _error(f"--sessions must be positive, got {args.sessions}")
    if not 2 <= args.families <= len(FAMILIES):
        return _error(f"--families must be between 2 and {len(FAMILIES)}, got {args.families}")
    if args.days < 1:
        return _error(f"--days must be at least 1, got {args.days}")
    if args.end_date:
        try:
            date.fromisoformat(args.end_date)
        except ValueError:
            return _error(f"--end-date {args.end_date!r} is not YYYY-MM-DD")
    config = {"source": "simulate", "seed": args.seed, "n_sessions": args.sessions, "n_families": args.families,
              "days": args.days, "end_date": args.end_date}
    return _run_sequence((JobStep("episodes_ingest_job", None, {"ops": {"agent_episodes": {"config": config}}}),),
                         log_level="INFO")


RANK_SQL = """
SELECT id, name, uses, success_rate, avg_reward, avg_latency_ms, metadata, archived_at,
       CASE WHEN %(q)s::vector IS NULL OR embedding IS NULL THEN 0 ELSE 1 - (embedding <=> %(q)s::vector) END AS sim
FROM memory.skills
WHERE (%(all)s OR archived_at IS NULL)
"""


def score(sim: float, success_rate: float, uses: int, avg_reward: float) -> float:
    """AgentDB's retrieval score (SkillLibrary.retrieveSkills): 0.4 sim + 0.3 sr + 0.1 min(uses/1000, 1) + 0.2 reward."""
    return 0.4 * sim + 0.3 * success_rate + 0.1 * min(uses / 1000, 1.0) + 0.2 * avg_reward


def cmd_skills(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _resources

    if args.k < 1:
        return _error(f"--k must be positive, got {args.k}")
    with _resources("warehouse", "learning") as res:
        query = None
        if args.search:
            try:
                embedder = res.learning.embedder(None)
            except FileNotFoundError:
                return _error("no episode task model yet: run `gateway learn` (or `make run`) first")
            query = "[" + ",".join(f"{x:.7g}" for x in embedder.embed([args.search])[0]) + "]"
        with res.warehouse.connection() as conn:
            rows = conn.execute(RANK_SQL, {"q": query, "all": args.all}).fetchall()
    if not rows:
        print("no skills yet: run `gateway learn` (or `make run`)")
        return 0
    ranked = sorted(rows, key=lambda r: (-score(float(r[8]), r[3], r[2], r[4]), r[0]))[: args.k]
    print(f"{'id':>5}  {'score':>5}  {'uses':>6}  {'success':>7}  {'reward':>6}  skill")
    for r in ranked:
        flag = "  [archived]" if r[7] else ""
        print(f"{r[0]:>5}  {score(float(r[8]), r[3], r[2], r[4]):5.3f}  {r[2]:>6}  {r[3]:7.2f}  {r[4]:6.3f}  {r[1]}{flag}")
        meta = r[6] or {}
        if meta.get("keywords"):
            print(f"{'':>36}distinctive: {', '.join(meta['keywords'])}")
        for p in meta.get("pitfalls", []):
            print(f"{'':>36}pitfall: {p['text']} ({p['count']}x)")
    print(f"({len(ranked)} of {len(rows)} skills; score = 0.4 sim + 0.3 success + 0.1 min(uses/1000,1) + 0.2 reward)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this domain's subcommands to the `gateway` parser."""
    p = sub.add_parser("learn", help="nightly learning now (skills, causal edges, experiments), through Dagster")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(NIGHTLY_ASSETS)}")
    p.add_argument("--window-days", type=int, default=None, help="consolidation window (default 90)")
    p.add_argument("--date", help="the nightly partition (default: today, UTC)")
    p.set_defaults(func=cmd_learn)
    p = sub.add_parser("skills", help="list skills ranked by AgentDB's retrieval score, with their pitfalls")
    p.add_argument("--search", help="rank by similarity to this task text too")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--all", action="store_true", help="include archived skills")
    p.set_defaults(func=cmd_skills)
    p = sub.add_parser("simulate-episodes", help="generate agent episodes with planted ground truth (through Dagster)")
    p.add_argument("--sessions", type=int, default=300)
    p.add_argument("--families", type=int, default=8)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--end-date", help="last day of the set (default: today, UTC)")
    p.set_defaults(func=cmd_simulate_episodes)
