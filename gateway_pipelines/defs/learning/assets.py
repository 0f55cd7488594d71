"""The learning group: agent episodes in, nightly skill consolidation, causal edges, experiments.

Thin Dagster layer over `gateway_pipelines.lib.learning` (docs/learning.md)."""


import base64
import time
from datetime import date
from pathlib import Path

import dagster as dg

from gateway_pipelines.defs.learning import checks
from gateway_pipelines.defs.learning.partitions import as_of, learning_partitions
from gateway_pipelines.lib.learning.consolidation import consolidate, skills_markdown
from gateway_pipelines.lib.learning.episodes import load_jsonl, scan_episode_landing, store_generated
from gateway_pipelines.lib.learning.experiments import honoured_interventions, run_experiments
from gateway_pipelines.lib.learning.generator import FAMILIES, generate_episodes
from gateway_pipelines.lib.learning.learner import edges_markdown, forest_plot_png, learn_edges
from gateway_pipelines.lib.learning.resource import LearningResource
from gateway_pipelines.lib.warehouse import WarehouseResource

OWNERS = ["team:learning"]
SOURCES = ("landing", "file", "simulate")


def _col(name: str, type_: str, description: str) -> dg.TableColumn:
    return dg.TableColumn(name, type_, description=description)


EPISODES_SCHEMA = dg.TableSchema(columns=[
    _col("id", "bigint", "episode id (identity); the learner's watermark is on it"),
    _col("source_key", "text", "natural key: gen:<set>:<session>:<pos> or jsonl:<sha256 of the record>"),
    _col("session_id", "text", "the agent session"),
    _col("task", "text", "what the agent was asked to do (paraphrases of one skill differ)"),
    _col("reward", "double precision", "in [0, 1]"),
    _col("success", "boolean", "failures count in every rate"),
    _col("ts", "timestamp with time zone", "when the episode happened"),
])
SKILLS_SCHEMA = dg.TableSchema(columns=[
    _col("id", "bigint", "stable while the skill's cluster persists"),
    _col("name", "text", "the cluster's medoid task"),
    _col("success_rate", "double precision", "over every episode of the cluster in the window, failures included"),
    _col("uses", "integer", "episodes of the cluster in the window"),
    _col("created_from_episodes", "bigint[]", "the ids of those episodes"),
    _col("metadata", "jsonb", "keywords, pitfalls (from failure critiques), task variants, model id"),
    _col("archived_at", "timestamp with time zone", "set by the prune rule instead of a DELETE"),
])
EDGES_SCHEMA = dg.TableSchema(columns=[
    _col("from_memory_id", "text", "skill A (from_memory_type 'skill')"),
    _col("to_memory_id", "text", "skill B"),
    _col("uplift", "double precision", "AIPW effect of A (within the window before) on B's reward"),
    _col("ci_low", "double precision", "95% interval, influence-function standard error clustered by session"),
    _col("ci_high", "double precision", "95% interval, upper end"),
    _col("confidence", "double precision", "(1 - p) decayed by the days since last_validated_at"),
    _col("verdict", "text", "causal | no_effect | inconclusive"),
    _col("sample_size", "integer", "B episodes evaluated, over every batch"),
])
EXPERIMENTS_SCHEMA = dg.TableSchema(columns=[
    _col("id", "bigint", "experiment id, written back to causal_edges.experiment_ids"),
    _col("status", "text", "running | completed | failed (deadline passed before n per arm)"),
    _col("uplift", "double precision", "treatment mean - control mean (Welch), randomised arms"),
    _col("p_value", "double precision", "Welch t-test, scipy"),
    _col("sample_size", "integer", "observations recorded (one per new session: its first B episode); the "
         "pre-registered n_per_arm, conclusion and compliance are in metadata"),
])


class EpisodesConfig(dg.Config):
    source: str = "landing"  # landing: every new file in the landing folder; file: `path`; simulate: generate
    path: str | None = None
    seed: int = 7
    n_sessions: int = 300
    n_families: int = 8
    days: int = 30
    end_date: str | None = None  # simulate: the last day of the set (default: the newest nightly partition)
    # simulate: the simulated agents follow the running experiments' assignments (off by default, so a
    # rerun of `make run` generates the same set; on, the set differs while experiments run)
    honour_experiments: bool = False


class NightlyConfig(dg.Config):
    window_days: int | None = None  # consolidation window; default: the learning resource's (90)
    refit_embedding_model: bool = False  # fit the episode task model again (new model id: tasks re-embedded)


def _fail(text: str) -> dg.Failure:
    return dg.Failure(description=text, allow_retries=False)


def _require_tables(conn, asset: str) -> None:
    if conn.execute("SELECT to_regclass('memory.learner_state')").fetchone()[0] is None:
        raise _fail(f"{asset}: the warehouse has no learning tables yet (sql/011_learning_memory.sql); run "
                    "`gateway db migrate` (or `gateway run`) first")


@dg.asset(
    group_name="learning",
    owners=OWNERS,
    kinds={"postgres"},
    tags={"gateway/trigger": "sensor"},
    metadata={"dagster/table_name": "memory.episodes", "dagster/column_schema": EPISODES_SCHEMA},
    description="Agent episodes into memory.episodes: AgentDB-shaped JSONL files from landing/episodes (bad "
    "lines quarantined in memory.episode_rejects with line and reason), or a generated set with its ground "
    "truth in memory.generated_sets. Idempotent by source_key.",
)
def agent_episodes(context: dg.AssetExecutionContext, config: EpisodesConfig, warehouse: WarehouseResource,
                   learning: LearningResource) -> dg.MaterializeResult:
    if config.source not in SOURCES:
        raise _fail(f"agent_episodes: unknown source {config.source!r}; use one of {', '.join(SOURCES)}")
    metadata: dict = {"source": config.source}
    with warehouse.connection() as conn:
        _require_tables(conn, "agent_episodes")
        if config.source == "simulate":
            if not 2 <= config.n_families <= len(FAMILIES):
                raise _fail(f"agent_episodes: n_families must be between 2 and {len(FAMILIES)}, got {config.n_families}")
            if config.n_sessions < 1:
                raise _fail(f"agent_episodes: n_sessions must be positive, got {config.n_sessions}")
            end = config.end_date or learning_partitions().get_last_partition_key()
            try:
                date.fromisoformat(end)
            except ValueError as exc:
                raise _fail(f"agent_episodes: end_date {end!r} is not YYYY-MM-DD") from exc
            interventions = honoured_interventions(conn) if config.honour_experiments else ()
            gen = generate_episodes(seed=config.seed, n_sessions=config.n_sessions, n_families=config.n_families,
                                    days=config.days, end_date=end, interventions=interventions)
            out = store_generated(conn, gen)
            metadata.update({"set_id": out["set_id"], "rows_read": out["read"], "rows_inserted": out["inserted"],
                             "rows_duplicate": out["duplicates"], "distinct_tasks": gen.truth["n_distinct_tasks"],
                             "planted_effects": dg.MetadataValue.json(gen.truth["planted_effects"]),
                             "experiments_honoured": len(interventions)})
        else:
            if config.source == "file":
                if not config.path or not Path(config.path).is_file():
                    raise _fail(f"agent_episodes: source 'file' needs an existing `path`, got {config.path!r}")
                files = [Path(config.path)]
            else:
                files = [p for p, _ in scan_episode_landing(learning.landing_path())]
            loads = [load_jsonl(conn, f) for f in files]
            new = [x for x in loads if not x.already_loaded]
            metadata.update({
                "files": len(loads), "files_already_loaded": len(loads) - len(new),
                "rows_read": sum(x.lines_read for x in new), "rows_inserted": sum(x.loaded for x in new),
                "rows_rejected": sum(x.quarantined for x in new), "rows_duplicate": sum(x.duplicates for x in new),
            })
            rejects = [(x.file_name, ln, reason) for x in new for ln, reason, _ in x.rejects][:20]
            if rejects:
                metadata["rejects"] = dg.MetadataValue.md(
                    "| file | line | reason |\n|---|---|---|\n" + "\n".join(f"| {f} | {ln} | {r} |" for f, ln, r in rejects))
        total = conn.execute("SELECT count(*) FROM memory.episodes").fetchone()[0]
    metadata["dagster/row_count"] = int(total)
    return dg.MaterializeResult(metadata=metadata)


def _partitioned(name: str, schema: dg.TableSchema, table: str, description: str, deps: list[str]):
    return dict(
        name=name, group_name="learning", owners=OWNERS, kinds={"postgres", "scikitlearn"},
        partitions_def=learning_partitions(), deps=deps, tags={"gateway/trigger": "schedule"},
        check_specs=checks.specs(name, learning_partitions()),
        metadata={"dagster/table_name": table, "dagster/column_schema": schema}, description=description,
    )


@dg.asset(**_partitioned(
    "skills", SKILLS_SCHEMA, "memory.skills",
    "Nightly skill consolidation over the window ending at the partition's day: semantic clusters of the "
    "episodes' tasks (the platform's LSA provider fitted on the tasks; deterministic), stats over every "
    "episode failures included, stable ids, TF-IDF descriptions and pitfalls, links, archive-not-delete, "
    "one memory.consolidation_runs row per run. ARI against the generator's families when they exist.",
    ["agent_episodes"]))
def skills(context: dg.AssetExecutionContext, config: NightlyConfig, warehouse: WarehouseResource,
           learning: LearningResource) -> dg.MaterializeResult:
    if config.window_days is not None and config.window_days < 1:
        raise _fail(f"skills: window_days must be at least 1, got {config.window_days}")
    end = as_of(context.partition_key)
    with warehouse.connection() as conn:
        _require_tables(conn, "skills")
        try:
            result = consolidate(conn, lambda tasks: learning.embedder(tasks, refit=config.refit_embedding_model),
                                 end, context.run_id, learning.consolidation_params(config.window_days),
                                 partition_key=context.partition_key)
        except ValueError as exc:
            raise _fail(f"skills {context.partition_key}: {exc}") from exc
        check = checks.result(conn, "skills")
        active = conn.execute("SELECT count(*) FROM memory.skills WHERE archived_at IS NULL").fetchone()[0]
    meta = {
        "dagster/row_count": int(active), "episodes_read": result.episodes_read, "clusters": result.clusters,
        "rows_inserted": result.created, "rows_updated": result.updated, "rows_unchanged": result.unchanged,
        "skills_archived": result.archived, "skill_links": result.links, "embedding_model": result.model_id,
        "seconds": round(result.duration_s, 2), "as_of": end.isoformat(),
        "top_skills": dg.MetadataValue.md(skills_markdown(result.skills)),
    }
    truth = result.ground_truth
    if truth:
        meta["ari"] = dg.MetadataValue.float(truth["ari"])
        meta["ari_exact_string"] = dg.MetadataValue.float(truth["ari_exact_string"])
        if truth["max_abs_z"] is not None:
            meta["success_rate_max_abs_error"] = dg.MetadataValue.float(truth["max_abs_success_rate_error"])
            meta["success_rate_max_abs_z"] = dg.MetadataValue.float(truth["max_abs_z"])
    return dg.MaterializeResult(metadata=meta, check_results=[check])


@dg.asset(**_partitioned(
    "causal_edges", EDGES_SCHEMA, "memory.causal_edges",
    "Cross-fitted two-arm AIPW effects between skills (A within the session window before B), over every "
    "pair, incremental by episode watermark; one edge per pair, pooled as evidence grows, confidence decaying "
    "without new evidence. Coverage of the planted effects when ground truth exists.",
    ["skills"]))
def causal_edges(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 learning: LearningResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    end = as_of(context.partition_key)
    with warehouse.connection() as conn:
        _require_tables(conn, "causal_edges")
        result = learn_edges(conn, end, learning.learner_params())
        check = checks.result(conn, "causal_edges")
    meta = {
        "dagster/row_count": len(result.edges), "rows_inserted": result.edges_created,
        "rows_updated": result.edges_updated, "new_units": result.new_units,
        "batch_processed": result.batch_processed, "watermark": result.watermark_after,
        "cluster_pairs_evaluated": result.pairs_evaluated, "episode_pairs_evaluated": result.episode_pairs,
        "pairs_skipped_small": result.pairs_skipped, "covariates": ", ".join(result.covariates) or "-",
        "batches_computed": result.batches_computed, "batches_reopened_by_late_episodes": result.batches_reopened,
        "late_episodes": result.late_episodes, "cells_written": result.cells_written,
        "batches_remapped_by_consolidation": result.batches_remapped,
        **{f"learner_{k}": v for k, v in result.timings.items()},
        "edges_causal": sum(e["verdict"] == "causal" for e in result.edges),
        "seconds": round(time.perf_counter() - started, 2),
        "edges": dg.MetadataValue.md(edges_markdown(result.edges)),
    }
    truth = result.ground_truth
    if truth:
        if truth["planted_coverage"] is not None:
            meta["coverage_planted"] = dg.MetadataValue.float(truth["planted_coverage"])
        if truth["null_rejection_rate"] is not None:
            meta["null_rejection_rate"] = dg.MetadataValue.float(truth["null_rejection_rate"])
        meta["ground_truth"] = dg.MetadataValue.json(truth)
    if result.edges:
        png = forest_plot_png(result.edges)
        meta["forest_plot"] = dg.MetadataValue.md(
            f"![edge effects, 95% CI](data:image/png;base64,{base64.b64encode(png).decode()})")
    return dg.MaterializeResult(metadata=meta, check_results=[check])


@dg.asset(**_partitioned(
    "causal_experiments", EXPERIMENTS_SCHEMA, "memory.causal_experiments",
    "Randomised A/B follow-ups of edges with wide intervals (sessions assigned by a hash): one observation "
    "per new session, a sample size fixed by a power analysis at creation, a single Welch t-test (scipy) once "
    "both arms reach it (so nightly looks do not inflate alpha), the result written back to the edge; "
    "failed past a deadline.",
    ["causal_edges"]))
def causal_experiments(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       learning: LearningResource) -> dg.MaterializeResult:
    end = as_of(context.partition_key)
    with warehouse.connection() as conn:
        _require_tables(conn, "causal_experiments")
        out = run_experiments(conn, end, learning.experiment_params())
        check = checks.result(conn, "causal_experiments")
        counts = dict(conn.execute("SELECT status, count(*) FROM memory.causal_experiments GROUP BY 1").fetchall())
        progress = conn.execute(
            "SELECT x.id, x.metadata, count(*) FILTER (WHERE o.is_treatment), count(*) FILTER (WHERE NOT o.is_treatment) "
            "FROM memory.causal_experiments x LEFT JOIN memory.causal_observations o ON o.experiment_id = x.id "
            "WHERE x.status = 'running' AND x.metadata ? 'edge_id' GROUP BY x.id ORDER BY x.id LIMIT 20").fetchall()
    meta = {"dagster/row_count": int(sum(counts.values())), "rows_inserted": out["created"],
            "observations_recorded": out["observations"], "completed_now": out["completed"],
            "failed_now": out["failed"], "running": int(counts.get("running", 0)),
            "completed": int(counts.get("completed", 0)), "failed": int(counts.get("failed", 0))}
    if out["results"]:
        meta["results"] = dg.MetadataValue.md(
            "| experiment | conclusion | uplift | 95% CI | p | n per arm | compliance |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(f"| {r['experiment_id']} | {r['conclusion']} | {r['uplift']:+.3f} | [{r['ci_low']:+.3f}, "
                        f"{r['ci_high']:+.3f}] | {r['p_value']:.3g} | {r['n_per_arm']} | {r['compliance']:.2f} |"
                        for r in out["results"]))
    if progress:
        meta["running_experiments"] = dg.MetadataValue.md(
            "| experiment | edge | treated / control of n per arm | power at mde | deadline |\n|---|---|---|---|---|\n"
            + "\n".join(f"| {i} | {m.get('edge_id')} | {t} / {c} of {m.get('n_per_arm', '-')} | "
                        f"{m.get('power_at_mde', '-')} | {str(m.get('deadline', '-'))[:10]} |"
                        for i, m, t, c in progress))
    return dg.MaterializeResult(metadata=meta, check_results=[check])


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[agent_episodes, skills, causal_edges, causal_experiments])
