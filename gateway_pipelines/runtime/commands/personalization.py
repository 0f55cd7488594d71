"""`gateway` commands of the personalization domain.

    gateway events ingest PATH [--links PATH]     load an event file now, through Dagster (as the sensor would)
    gateway simulate --users N --days D [--seed S] [--movielens-users M]   simulate, then load the events
    gateway recommend USER [--k 20] [--explain] [--strategy bandit|<arm>] [--device tv|mobile|web]
                                                  the user's top k, explained; logged to learning.impressions
    gateway evaluate                              the offline evaluation now (through Dagster)
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_events(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _run_sequence
    from gateway_pipelines.defs.personalization.partitions import range_tags
    from gateway_pipelines.lib.personalization.events import date_span, is_ratings_file, links_beside
    from gateway_pipelines.runtime.runner import JobStep

    path = Path(args.path).expanduser().resolve()
    if not path.is_file():
        return _error(f"{path} is not a file")
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json") and not is_ratings_file(path):
        return _error(f"{path.name}: not an event file (JSONL .jsonl/.ndjson, or a MovieLens *ratings*.csv)")
    links = Path(args.links).expanduser().resolve() if args.links else None
    if links is not None and not links.is_file():
        return _error(f"--links {links}: not a file")
    if is_ratings_file(path) and links is None and not links_beside(path).is_file():
        return _error(f"{path.name} is a MovieLens ratings file: give its links.csv with --links "
                      f"(looked for {links_beside(path)})")
    partition, tags = range_tags(date_span(path))
    config = {"paths": [str(path)], **({"links": str(links)} if links else {})}
    step = JobStep("personalization_job", partition, {"ops": {"watch_events": {"config": config}}},
                   {**tags, "gateway/file": path.name})
    return _run_sequence((step,), log_level="INFO")


def _range(first: date, last: date) -> dict[str, str]:
    if first == last:
        return {}
    return {"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()}


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _run_sequence
    from gateway_pipelines.lib.personalization.movielens import ML_END, ML_START
    from gateway_pipelines.lib.personalization.simulator import SIM_END_DATE, SimulationParams
    from gateway_pipelines.runtime.runner import JobStep

    if args.users < 1 or args.users > 1_000_000:
        return _error(f"--users {args.users}: must be 1..1,000,000")
    if args.days < 1 or args.days > 3650:
        return _error(f"--days {args.days}: must be 1..3650")
    if args.movielens_users < 0:
        return _error(f"--movielens-users {args.movielens_users}: must be 0 or more")
    try:
        end = date.fromisoformat(args.end_date) if args.end_date else SIM_END_DATE
    except ValueError:
        return _error(f"--end-date {args.end_date!r}: expected YYYY-MM-DD")
    if end > date.today():
        return _error(f"--end-date {end}: in the future (events from the future are quarantined)")
    params = SimulationParams(args.users, args.days, args.seed, end)
    sim_config = {"users": args.users, "days": args.days, "seed": args.seed, "end_date": end.isoformat(),
                  "movielens_users": args.movielens_users}
    first = date.fromordinal(end.toordinal() - args.days + 1)
    steps = [JobStep("personalization_simulation_job", None, {"ops": {"watch_event_simulation": {"config": sim_config}}})]
    if args.movielens_users:
        # its own run: its days are years away from the simulator's, and a run plans every day of its range
        steps.append(JobStep("personalization_ingest_job", None,
                             {"ops": {"watch_events": {"config": {"paths": ["movielens-sim/ratings.csv"]}}}},
                             _range(ML_START.date(), ML_END.date())))
    # the day after the last one too: a late-night watch ends after midnight
    from gateway_pipelines.defs.personalization.partitions import range_tags

    partition, tags = range_tags((first, end + timedelta(days=1)))
    steps.append(JobStep("personalization_job", partition,
                         {"ops": {"watch_events": {"config": {"paths": [f"simulator-{params.run_id}.jsonl"]}}}}, tags))
    return _run_sequence(tuple(steps), log_level="INFO")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _run_sequence
    from gateway_pipelines.runtime.runner import JobStep

    if args.k < 1 or args.k > 100:
        return _error(f"--k {args.k}: must be 1..100")
    step = JobStep("personalization_evaluation_job", None, {"ops": {"offline_evaluation": {"config": {"k": args.k}}}})
    return _run_sequence((step,), log_level="INFO")


def recommend_for(conn, user_id: str, k: int, personalization, *, explain: bool = True, log: bool = True,
                  config=None):
    """The library path the CLI uses: catalogue, co-occurrence, the user's state, HNSW candidates.

    The model (catalogue, co-occurrence, causal weights) is kept in process between calls and read
    again when the warehouse's version of it changes (lib/personalization/serving.py); the user's
    state is read on every call, in the same round trip as that check."""
    import numpy as np

    from gateway_pipelines.lib.personalization.serving import MODELS
    from gateway_pipelines.lib.personalization.store import log_impressions
    from gateway_pipelines.lib.vector_store.search import nearest_ids

    served, state, _ = MODELS.serve(conn, user_id, config or personalization.recommender_config())
    catalogue, model, weights = served.catalogue, served.model, served.weights
    index = catalogue.index

    def hnsw(vector, n, exclude):
        # the index gives the candidates; their exact order comes from the vectors the model holds (the
        # same rows: the model is rebuilt when what is served changes), ties by id as the search breaks them
        ids = sorted(nearest_ids(conn, vector, k=min(n, 1000), ef_search=max(personalization.ef_search, n),
                                 exclude_ids=[catalogue.keys[i] for i in exclude]))
        items = np.array([index[i] for i in ids if i in index], dtype=np.int64)
        similarity = catalogue.vectors[items] @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-similarity, kind="stable")[:n]
        return items[order], similarity[order].astype(np.float64)

    rec = model.recommend(state, k, ann=hnsw, explain=explain)
    if log:
        log_impressions(conn, rec, source="recommend", device="cli")
    return rec, state, weights


def recommend_with_strategy(conn, user_id: str, k: int, personalization, strategy: str, *, device: str,
                            seed: int | None = None, now=None):
    """Serve with one strategy (docs/bandits.md): a named arm (propensity 1), or `bandit`, a Thompson draw
    from the newest posteriors of the user's context; the arm, its propensity and the context are logged
    with the impressions. Returns (rec, state, weights, choice)."""
    from datetime import UTC, datetime

    import numpy as np

    from gateway_pipelines.lib.learning import bandits
    from gateway_pipelines.lib.personalization.store import log_impressions

    now = now or datetime.now(UTC)
    hour = now.hour + now.minute / 60
    if strategy == "bandit":
        choice = bandits.choose_strategy(conn, user_id, device, hour, np.random.default_rng(seed))
    else:
        user_type = "new" if bandits.earlier_sessions(conn, user_id) < bandits.NEW_USER_SESSIONS else "returning"
        choice = bandits.StrategyChoice(strategy, 1.0, bandits.context_key(device, bandits.daypart(hour), user_type),
                                        {a: float(a == strategy) for a in bandits.ARMS}, None)
    config = bandits.strategy_config(choice.arm, personalization.recommender_config())
    rec, state, weights = recommend_for(conn, user_id, k, personalization, explain=True, log=False, config=config)
    ids = log_impressions(conn, rec, served_at=now, source="recommend", device=device)
    bandits.record_choice(conn, ids, choice.arm, choice.propensity, choice.context, choice.probabilities)
    return rec, state, weights, choice


def cmd_recommend(args: argparse.Namespace) -> int:
    from gateway_pipelines.cli import _resources

    if args.k < 1 or args.k > 100:
        return _error(f"--k {args.k}: must be 1..100")
    if not args.user.strip():
        return _error("USER is empty")
    strategy = getattr(args, "strategy", "default")
    choice = None
    with _resources("warehouse", "personalization") as r, r.warehouse.connection() as conn:
        try:
            if strategy == "default":
                rec, state, weights = recommend_for(conn, args.user, args.k, r.personalization, explain=True)
            else:
                rec, state, weights, choice = recommend_with_strategy(
                    conn, args.user, args.k, r.personalization, strategy, device=args.device or "web", seed=args.seed)
        except LookupError as exc:
            return _error(str(exc))
        conn.commit()
    if choice is not None:
        source = (f"drawn from the posteriors of {choice.state_as_of}" if choice.state_as_of else
                  "drawn from the prior (no posteriors stored yet)") if strategy == "bandit" else "fixed"
        print(f"strategy {choice.arm} for context {choice.context} (propensity {choice.propensity:.3f}, {source})")
    note = ("cold start: no watch history, so popular titles under the diversity rule"
            if rec.strategy == "cold_start" else f"{len(state.finished)} finished titles excluded")
    print(f"recommendations for {args.user} ({rec.strategy}; {note}; causal weights "
          f"{'on' if weights else 'off'})")
    print(f"{'#':>2}  {'id':<14} {'title':<40} {'score':>6} {'sim':>5}  sources")
    for p in rec.picks:
        print(f"{p.rank:>2}  {p.key:<14} {p.title[:40]:<40} {p.score:>6.3f} {p.similarity:>5.2f}  {'+'.join(p.sources)}")
        if args.explain:
            print(f"      {p.explanation}")
    if rec.diversity_relaxed:
        print("(the genre cap was relaxed: too few candidates to respect it)")
    print(f"({len(rec.picks)} picks logged to learning.impressions)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this domain's subcommands to the `gateway` parser."""
    events = sub.add_parser("events", help="watch events: load a file now, through Dagster")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    ingest = events_sub.add_parser("ingest", help="ingest a JSONL or MovieLens ratings file (as the sensor would)")
    ingest.add_argument("path", help="events .jsonl, or a MovieLens ratings.csv")
    ingest.add_argument("--links", help="MovieLens links.csv (default: beside ratings.csv)")
    ingest.set_defaults(func=cmd_events)

    simulate = sub.add_parser("simulate", help="simulate users over the catalogue, then load their events")
    simulate.add_argument("--users", type=int, default=200)
    simulate.add_argument("--days", type=int, default=14)
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--end-date", help="last simulated day, YYYY-MM-DD (default 2026-11-30)")
    simulate.add_argument("--movielens-users", type=int, default=0,
                          help="also write and load a MovieLens-format dataset of this many users")
    simulate.set_defaults(func=cmd_simulate)

    recommend = sub.add_parser("recommend", help="a user's recommendations (logged to learning.impressions)")
    recommend.add_argument("user")
    recommend.add_argument("--k", type=int, default=20)
    recommend.add_argument("--explain", action="store_true", help="say why each title was picked")
    recommend.add_argument("--strategy", default="default",
                           choices=("default", "bandit", "content_similarity", "popularity", "causal_rerank",
                                    "diversity_heavy"),
                           help="bandit: draw the strategy by Thompson sampling from learning.bandit_arms "
                                "(logged with its propensity); or serve one strategy")
    recommend.add_argument("--device", choices=("tv", "mobile", "web"),
                           help="the device of the request, part of the bandit's context (default web)")
    recommend.add_argument("--seed", type=int, help="seed of the bandit's draw (default: fresh randomness)")
    recommend.set_defaults(func=cmd_recommend)

    evaluate = sub.add_parser("evaluate", help="run the offline evaluation now (through Dagster)")
    evaluate.add_argument("--k", type=int, default=10)
    evaluate.set_defaults(func=cmd_evaluate)
