"""The personalization assets: simulation, watch events, preference vectors, offline evaluation.

The dbt models stg_watch_events and fct_watch_events sit between watch_events and the vectors
(`defs/analytics/assets.py` puts them in this group). Pure work lives in
`gateway_pipelines/lib/personalization/`; this layer reads config and resources, calls it, and
reports what happened.
"""


import base64
import hashlib
import json
import time
from datetime import date
from pathlib import Path

import dagster as dg

from gateway_pipelines import automation
from gateway_pipelines.defs.personalization.partitions import events_partitions
from gateway_pipelines.lib.personalization.catalogue import catalogue_keys, load_catalogue
from gateway_pipelines.lib.personalization.evaluation import (
    evaluate_source,
    evaluation_plot_png,
    evaluation_table_md,
)
from gateway_pipelines.lib.personalization.events import EventFileError, parse_file
from gateway_pipelines.lib.personalization.movielens import generate_movielens, write_movielens
from gateway_pipelines.lib.personalization.preference import compute_preferences
from gateway_pipelines.lib.personalization.resource import PersonalizationResource
from gateway_pipelines.lib.personalization.simulator import SIM_END_DATE, SimulationParams, simulate
from gateway_pipelines.lib.personalization.store import (
    changed_users,
    event_sources,
    fct_exists,
    latest_causal_weights,
    latest_simulation_truth,
    load_events,
    read_events,
    upsert_preferences,
    write_evaluations,
    write_simulation,
    write_simulation_file,
)
from gateway_pipelines.lib.warehouse import WarehouseResource

OWNERS = ["team:personalization"]
GROUP = "personalization"
MOVIELENS_SIM_DATASET = "movielens-sim"
BEATS_POPULARITY_CHECK = "recommender_beats_popularity"
MIN_EVAL_USERS = 10  # a source with fewer evaluable users is reported, not judged


def _col(name: str, type_: str, description: str) -> dg.TableColumn:
    return dg.TableColumn(name, type_, description=description)


WATCH_EVENTS_SCHEMA = dg.TableSchema(columns=[
    _col("event_id", "text", "sha256 (32 hex) of source, user, title, event type and time; the primary key"),
    _col("source", "text", "simulator, movielens:<dataset> or events:<file stem>"),
    _col("user_id", "text", "the user (MovieLens users as <dataset>:<userId>)"),
    _col("content_key", "text", "the title, a key of vectors.content_vectors"),
    _col("event_type", "text", "impression, click, play, progress, complete, rate or dismiss"),
    _col("completion", "double precision", "share watched 0-1, when the event says"),
    _col("rating", "double precision", "rating 0-10 (MovieLens stars x 2), when rated"),
    _col("ts", "timestamp with time zone", "when it happened (UTC)"),
    _col("event_date", "date", "UTC date of ts: the daily partition"),
])
TRUTH_SCHEMA = dg.TableSchema(columns=[
    _col("run_id", "text", "the simulation run, sim-s<seed>-u<users>-d<days>-<end date>"),
    _col("feature", "text", "one of the nine serve-time features"),
    _col("segment", "text", "all, device=..., time_of_day=... or user_type=new|returning"),
    _col("true_effect", "double precision", "the planted effect on watch completion"),
    _col("description", "text", "what the effect is per unit of"),
])
VECTORS_SCHEMA = dg.TableSchema(columns=[
    _col("user_id", "text", "the user; primary key"),
    _col("vector", "vector(768)", "unit preference vector in the content vectors' space (HNSW index)"),
    _col("confidence", "double precision", "§6.3 confidence 0.1-0.95"),
    _col("genre_affinities", "jsonb", "genre id -> affinity 0-1, for the genres the user's events touched"),
    _col("event_count", "integer", "events the vector was computed from"),
    _col("events_watermark", "timestamp with time zone", "newest ingested_at of those events"),
    _col("rule", "text", "ema, or ema+decay<h>d with time decay"),
])
EVALUATIONS_SCHEMA = dg.TableSchema(columns=[
    _col("run_id", "text", "eval-<fingerprint of the events and config>: a rerun on the same data is the same run"),
    _col("source", "text", "the event source evaluated"),
    _col("method", "text", "recommender, popularity or cooccurrence"),
    _col("metric", "text", "hit_rate or ndcg"),
    _col("k", "integer", "cut-off (10)"),
    _col("value", "double precision", "the metric's value"),
    _col("n_users", "integer", "users evaluated"),
])


def _md_table(headers: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def landing_file(personalization: PersonalizationResource, path: str) -> Path:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and personalization.landing_dir:
        candidate = personalization.landing_path() / candidate
    return candidate


# --------------------------------------------------------------------------- simulation


class SimulationConfig(dg.Config):
    users: int = 200
    days: int = 14
    seed: int = 7
    end_date: str | None = None  # YYYY-MM-DD; default SIM_END_DATE, so the same seed gives the same data
    movielens_users: int = 0  # also write a MovieLens-format dataset (ratings.csv + links.csv) of this many users


def simulation_params(config: SimulationConfig) -> SimulationParams:
    end = date.fromisoformat(config.end_date) if config.end_date else SIM_END_DATE
    return SimulationParams(n_users=config.users, n_days=config.days, seed=config.seed, end_date=end)


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "postgres"},
    deps=["content_vectors"],
    tags={"gateway/trigger": "manual"},
    metadata={"dagster/table_name": "learning.simulation_truth", "dagster/column_schema": TRUTH_SCHEMA},
    description="Simulated users over the catalogue (planted causal effects, confounded ranking): "
    "learning.impressions/outcomes with serve-time features, learning.simulation_truth, and the "
    "events as simulator-<run>.jsonl in the events landing folder. Started by `gateway simulate` or `make run`.",
)
def watch_event_simulation(context: dg.AssetExecutionContext, config: SimulationConfig, warehouse: WarehouseResource,
                           personalization: PersonalizationResource) -> dg.MaterializeResult:
    try:
        params = simulation_params(config)
        params.validate()
    except ValueError as exc:
        raise dg.Failure(description=f"watch_event_simulation: {exc}", allow_retries=False) from exc
    started = time.perf_counter()
    with warehouse.connection() as conn:
        catalogue = load_catalogue(conn)
    if len(catalogue) < 24:
        raise dg.Failure(description=f"watch_event_simulation: the catalogue has {len(catalogue)} titles in "
                         "vectors.content_vectors; run the catalogue first (`gateway run`).", allow_retries=False)
    sim = simulate(catalogue, params)
    with warehouse.connection() as conn:
        written = write_simulation(conn, sim)
    path = write_simulation_file(sim, personalization.landing_path())
    metadata = {
        "dagster/row_count": len(sim.impressions),
        "simulation_run_id": sim.run_id,
        "written": written,
        "events_file": dg.MetadataValue.path(str(path)),
        "data_hash": sim.data_hash[:16],
        **{k: v for k, v in sim.stats.items()},
        "truth": dg.MetadataValue.md(_md_table(["feature", "segment", "true effect"],
                                               [(f, s, f"{v:+.4f}") for f, s, v, _ in sim.truth if s == "all"])),
    }
    if config.movielens_users > 0:
        data = generate_movielens(catalogue, config.movielens_users, seed=config.seed + 1000)
        ratings, links = write_movielens(data, personalization.landing_path() / MOVIELENS_SIM_DATASET)
        metadata.update({"movielens_ratings": dg.MetadataValue.path(str(ratings)), "movielens_rows": len(data.ratings)})
    metadata["duration_s"] = round(time.perf_counter() - started, 3)
    context.log.info(f"simulation {sim.run_id}: {sim.stats}; {'written' if written else 'already stored'}")
    return dg.MaterializeResult(metadata=metadata)


# --------------------------------------------------------------------------- watch events


class WatchEventsConfig(dg.Config):
    paths: list[str]  # the event files: absolute, or relative to the events landing folder
    links: str | None = None  # MovieLens links.csv (default: beside each ratings.csv)


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres"},
    deps=["content_vectors"],
    partitions_def=events_partitions(),
    backfill_policy=dg.BackfillPolicy.single_run(),
    tags={"gateway/trigger": "sensor"},
    metadata={"dagster/table_name": "raw.watch_events", "dagster/column_schema": WATCH_EVENTS_SCHEMA},
    description="Watch events from landing files (JSONL, or MovieLens ratings.csv + links.csv) into "
    "raw.watch_events, daily-partitioned by event date; bad lines go to raw.watch_event_rejects with "
    "file, line and reason; raw.event_files is the ledger. A re-ingest changes nothing. Started by "
    "the events landing sensor or `gateway events ingest`.",
)
def watch_events(context: dg.AssetExecutionContext, config: WatchEventsConfig, warehouse: WarehouseResource,
                 personalization: PersonalizationResource):
    paths = [landing_file(personalization, p) for p in config.paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise dg.Failure(description=f"watch_events: {', '.join(missing) or 'no file given'}: not a file; fix "
                         "`paths` in the run config (ops: watch_events: config: paths)", allow_retries=False)
    links = landing_file(personalization, config.links) if config.links else None
    with warehouse.connection() as conn:
        keys = catalogue_keys(conn)
    if not keys:
        raise dg.Failure(description="watch_events: vectors.content_vectors is empty, so no event can be "
                         "validated against the catalogue; build the catalogue first (`gateway run`).",
                         allow_retries=False)
    landing = personalization.landing_path() if personalization.landing_dir else None
    reports = []
    for path in paths:
        try:
            parsed = parse_file(path, keys, links=links, landing=landing)
        except EventFileError as exc:
            raise dg.Failure(description=f"watch_events: {exc}", allow_retries=False) from exc
        with warehouse.connection() as conn:
            reports.append(load_events(conn, parsed))
        r = reports[-1]
        context.log.info(f"{path.name} ({r.source}): read {r.lines_read}, loaded {r.loaded}, quarantined "
                         f"{r.quarantined} (not in catalogue {r.not_in_catalogue}), duplicates {r.duplicates}")
    window = context.partition_time_window
    outside = sorted({d for r in reports for d in r.loaded_dates if not window.start.date() <= d < window.end.date()})
    if outside:
        context.log.warning(f"{len(outside)} event dates lie outside the run's partitions "
                            f"({outside[0]}..{outside[-1]}); the events are loaded all the same")
    total = {key: sum(getattr(r, key) for r in reports) for key in
             ("lines_read", "loaded", "quarantined", "duplicates", "not_in_catalogue", "blank_lines")}
    reasons: dict[str, int] = {}
    for r in reports:
        for reason, n in r.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    ratio = total["quarantined"] / total["lines_read"] if total["lines_read"] else 0.0
    adds_up = all(r.adds_up for r in reports)
    starts = [r.min_ts for r in reports if r.min_ts]
    ends = [r.max_ts for r in reports if r.max_ts]
    metadata = {
        "dagster/row_count": total["loaded"],
        "lines_read": total["lines_read"], "rows_inserted": total["loaded"], "duplicates": total["duplicates"],
        "rows_rejected": total["quarantined"], "not_in_catalogue": total["not_in_catalogue"],
        "blank_lines": total["blank_lines"], "counts_add_up": adds_up,
        "already_ingested": all(r.already_ingested for r in reports),
        "files": dg.MetadataValue.md(_md_table(
            ["file", "source", "format", "read", "loaded", "quarantined", "not in catalogue", "duplicates", "sha256"],
            [(r.file_name, r.source, r.format, r.lines_read, r.loaded, r.quarantined, r.not_in_catalogue,
              r.duplicates, r.sha256[:12]) for r in reports])),
        "quarantine_ratio": dg.MetadataValue.float(round(ratio, 4)),
        "first_event": min(starts).isoformat() if starts else "none",
        "last_event": max(ends).isoformat() if ends else "none",
        "days_loaded": len({d for r in reports for d in r.loaded_dates}),
        "dates_outside_run": len(outside),
        "duration_s": round(sum(r.seconds for r in reports), 3),
        "reasons": dg.MetadataValue.md(_md_table(["reason", "lines"], sorted(reasons.items(), key=lambda kv: -kv[1]))
                                       if reasons else "no line quarantined"),
    }
    if not adds_up:
        context.log.warning("watch_events: the counts of a file do not add up; see the files table")
    return dg.MaterializeResult(metadata=metadata)


# --------------------------------------------------------------------------- preference vectors


def after_update_of(parent: str) -> dg.AutomationCondition:
    """Rebuild once after its parent updates (and its parent's blocking checks passed)."""
    return (
        automation.after_any_partition_of(dg.AssetSelection.assets(parent), f"{parent} updated since last build")
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label(f"after {parent}, gates passed")


class PreferenceConfig(dg.Config):
    full_rebuild: bool = False  # recompute every user, not just those with new events


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"pgvector", "python"},
    deps=["fct_watch_events"],
    automation_condition=after_update_of("fct_watch_events"),
    metadata={"dagster/table_name": "vectors.user_preference_vectors", "dagster/column_schema": VECTORS_SCHEMA},
    description="The media gateway's EMA preference rule (AGENTDB §6.3, without its bugs) recomputed from "
    "fct_watch_events in time order for the users with new events; 768-d like the content vectors; "
    "optional time decay (PersonalizationResource.half_life_days).",
)
def user_preference_vectors(context: dg.AssetExecutionContext, config: PreferenceConfig, warehouse: WarehouseResource,
                            personalization: PersonalizationResource) -> dg.MaterializeResult:
    rule = personalization.rule()
    with warehouse.connection() as conn:
        if not fct_exists(conn):
            raise dg.Failure(description="user_preference_vectors: analytics.fct_watch_events does not exist; "
                             "build the dbt models first.", allow_retries=False)
        catalogue = load_catalogue(conn)
        users, marks = changed_users(conn, "" if config.full_rebuild else rule)
        events = read_events(conn, users) if users else None
        total = conn.execute("SELECT count(*) FROM vectors.user_preference_vectors").fetchone()[0]
    started = time.perf_counter()
    written, n_events, rate = 0, 0, 0.0
    if users:
        prefs = compute_preferences(events, catalogue, half_life_days=personalization.half_life_days)
        compute_s = time.perf_counter() - started
        n_events = len(events)
        rate = n_events / compute_s if compute_s > 0 else 0.0
        with warehouse.connection() as conn:
            written = upsert_preferences(conn, prefs, marks, rule)
            total = conn.execute("SELECT count(*) FROM vectors.user_preference_vectors").fetchone()[0]
            preview = conn.execute(
                "SELECT user_id, round(confidence::numeric, 3), event_count, "
                "(SELECT string_agg(k || ':' || round(v::numeric, 2), ', ') FROM "
                "(SELECT key AS k, value::float8 AS v FROM jsonb_each_text(genre_affinities) "
                "ORDER BY value::float8 DESC LIMIT 3) g) "
                "FROM vectors.user_preference_vectors WHERE user_id = ANY(%s) ORDER BY user_id LIMIT 10",
                (users,)).fetchall()
    else:
        preview = []
    context.log.info(f"preference vectors: {len(users)} users with new events, {written} written, rule {rule}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(total),
        "users_recomputed": len(users),
        "rows_updated": written,
        "events_used": n_events,
        "events_per_s": dg.MetadataValue.float(round(rate, 1)),
        "rule": rule,
        "duration_s": round(time.perf_counter() - started, 3),
        "preview": dg.MetadataValue.md(_md_table(["user", "confidence", "events", "top genre affinities"], preview)
                                       if preview else "no user had new events"),
    })


@dg.asset_check(asset=user_preference_vectors, blocking=True,
                description="every preference vector is 768-d (the content vectors' dimension) and unit length")
def preference_vectors_are_unit_768d(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        bad, total = conn.execute(
            "SELECT count(*) FILTER (WHERE vector_dims(vector) <> 768 OR abs(vector_norm(vector) - 1) > 1e-3), "
            "count(*) FROM vectors.user_preference_vectors").fetchone()
    return dg.AssetCheckResult(passed=bad == 0, description=f"{bad} of {total} vectors not unit 768-d",
                               metadata={"bad": bad, "total": total})


# --------------------------------------------------------------------------- offline evaluation


class EvaluationConfig(dg.Config):
    k: int = 10
    train_share: float = 0.8  # the time split: the first 80 % of each source's events are history


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "postgres"},
    deps=["user_preference_vectors", "fct_watch_events"],
    automation_condition=after_update_of("user_preference_vectors"),
    metadata={"dagster/table_name": "learning.offline_evaluations", "dagster/column_schema": EVALUATIONS_SCHEMA},
    check_specs=[dg.AssetCheckSpec(BEATS_POPULARITY_CHECK, asset="offline_evaluation", blocking=True,
                                   description="the recommender's hit-rate@k is at least popularity's on every "
                                   f"source with ≥ {MIN_EVAL_USERS} evaluable users")],
    description="Time-split hit-rate@10 and nDCG@10 of the recommender against popularity and item-item "
    "co-occurrence, per event source, into learning.offline_evaluations, with a plot.",
)
def offline_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, warehouse: WarehouseResource,
                       personalization: PersonalizationResource):
    started = time.perf_counter()
    with warehouse.connection() as conn:
        if not fct_exists(conn):
            raise dg.Failure(description="offline_evaluation: analytics.fct_watch_events does not exist; build "
                             "the dbt models first.", allow_retries=False)
        catalogue = load_catalogue(conn)
        weights, weights_from = latest_causal_weights(conn)
        planted = latest_simulation_truth(conn)
        sources = event_sources(conn)
        frames = {s: read_events(conn, source=s) for s in sources}
    cfg = personalization.recommender_config()
    results = [evaluate_source(frames[s], catalogue, s, k=config.k, train_share=config.train_share, config=cfg,
                               causal_weights=weights, half_life_days=personalization.half_life_days,
                               true_effects=planted if s == "simulator" else None)
               for s in sources]
    fingerprint = hashlib.sha256(json.dumps({
        "sources": {s: [len(f), str(f["ingested_at"].max()) if len(f) else None] for s, f in frames.items()},
        "config": [config.k, config.train_share, repr(cfg), weights, personalization.half_life_days],
    }, sort_keys=True, default=str).encode()).hexdigest()[:16]
    eval_id = f"eval-{fingerprint}"
    rows = [r for res in results for r in res.rows]
    with warehouse.connection() as conn:
        write_evaluations(conn, eval_id, rows)
    judged = [r for r in results if r.n_users >= MIN_EVAL_USERS]
    losing = [r.source for r in judged if (r.value("recommender", "hit_rate") or 0) < (r.value("popularity", "hit_rate") or 0)]
    metadata: dict = {
        "dagster/row_count": len(rows),
        "evaluation_run_id": eval_id,
        "sources": len(results),
        "causal_weights": weights_from or "none (learning.causal_weights is empty)",
        "figures": dg.MetadataValue.md(evaluation_table_md(results) if rows else "no source had evaluable users"),
        "duration_s": round(time.perf_counter() - started, 3),
    }
    for res in results:
        if not res.rows:
            continue
        tag = res.source.replace(":", "_")
        for method in ("recommender", "popularity", "cooccurrence"):
            metadata[f"{tag}/{method}/hit_rate@{config.k}"] = dg.MetadataValue.float(round(res.value(method, "hit_rate"), 4))
            metadata[f"{tag}/{method}/ndcg@{config.k}"] = dg.MetadataValue.float(round(res.value(method, "ndcg"), 4))
        causal, plain = res.value("causal_rerank", "expected_completion"), res.value("similarity_only",
                                                                                  "expected_completion")
        if causal is not None and plain is not None:
            metadata[f"{tag}/causal_rerank/expected_completion_gain"] = dg.MetadataValue.float(round(causal - plain, 5))
            metadata[f"{tag}/similarity_only/expected_completion"] = dg.MetadataValue.float(round(plain, 5))
            metadata[f"{tag}/causal_rerank/expected_completion"] = dg.MetadataValue.float(round(causal, 5))
        lift = res.lift()
        if lift is not None:
            metadata[f"{tag}/lift_over_popularity"] = dg.MetadataValue.float(round(lift, 4))
        metadata[f"{tag}/users"] = res.n_users
    if rows:
        png = evaluation_plot_png(results, config.k)
        metadata["plot"] = dg.MetadataValue.md(f"![offline evaluation](data:image/png;base64,"
                                               f"{base64.b64encode(png).decode()})")
    yield dg.MaterializeResult(metadata=metadata)
    summary = "; ".join(f"{r.source}: {r.value('recommender', 'hit_rate'):.3f} vs {r.value('popularity', 'hit_rate'):.3f}"
                        for r in judged)
    yield dg.AssetCheckResult(
        check_name=BEATS_POPULARITY_CHECK, passed=not losing,
        description=(f"below popularity on {', '.join(losing)}" if losing else
                     (f"hit-rate@{config.k} recommender vs popularity: {summary}" if judged else
                      f"no source with ≥ {MIN_EVAL_USERS} evaluable users yet")),
        metadata={"sources_judged": len(judged), "sources_below_popularity": dg.MetadataValue.json(losing)},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[watch_event_simulation, watch_events, user_preference_vectors, offline_evaluation],
                          asset_checks=[preference_vectors_are_unit_768d])
