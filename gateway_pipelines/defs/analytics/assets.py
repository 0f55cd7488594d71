"""The dbt models as assets, built by a cached factory when definitions load.

Incremental models are daily-partitioned (a run passes its window to dbt in environment variables,
and a range backfill is one dbt invocation); whole-table models are unpartitioned, so the UI shows one
materialisation of dim_content instead of 335 days of it.

dbt is not invoked when nothing it reads changed since the selected models' last successful build
(lib/analytics/skip.py). The models are then still reported, as materialisations that say
`dbt_skipped: true` and why, with their row counts: dagster-dbt's outputs are optional (its assets
are subsettable), and an output not yielded would skip every step after it in the run (the GX suite
on stg_tmdb__titles, content_embeddings, content_vectors). Their dbt tests are not yielded, since
they did not run: Dagster shows them as skipped on that materialisation rather than as a fresh pass.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from gateway_pipelines import automation
from gateway_pipelines.defs.analytics.project import dbt_project
from gateway_pipelines.defs.tmdb.partitions import tmdb_partitions
from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource
from gateway_pipelines.lib.analytics.skip import (
    Decision,
    Node,
    Window,
    decide,
    manifest_nodes,
    project_checksum,
    record_builds,
)

INCREMENTAL = "config.materialized:incremental"
OWNERS = ["team:analytics"]
UNIQUE_ID = "dagster_dbt/unique_id"
# stg_tmdb__titles.sql reads raw.tmdb_titles only `between` the window's dates when it builds
# incrementally: that slice, not the whole table, is what a build of the window depends on.
WINDOWED_SOURCES = {"source.gateway.raw.tmdb_titles": "partition_date"}


class DbtConfig(dg.Config):
    full_refresh: bool = False  # rebuild incremental models from all of raw, not just the run's window
    force: bool = False  # invoke dbt even when nothing it reads changed since the last build (reruns its tests)


# The personalization models (dbt/models/personalization/): their group, owners, and the one parent
# each follows (the catalogue's models follow stg_tmdb__titles, as before).
PERSONALIZATION_FOLDER = "personalization"
PERSONALIZATION_OWNERS = ["team:personalization"]
PERSONALIZATION_PARENTS = {"stg_watch_events": "watch_events", "fct_watch_events": "stg_watch_events"}


def _is_personalization(dbt_resource_props: Mapping[str, Any]) -> bool:
    fqn = dbt_resource_props.get("fqn") or []
    return PERSONALIZATION_FOLDER in fqn[1:-1]


class GatewayDbtTranslator(DagsterDbtTranslator):
    """Owners and automation per model; the rest as dagster-dbt derives it from the manifest."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if _is_personalization(dbt_resource_props):
            return PERSONALIZATION_FOLDER
        return super().get_group_name(dbt_resource_props)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        if _is_personalization(dbt_resource_props):
            return super().get_owners(dbt_resource_props) or PERSONALIZATION_OWNERS
        return super().get_owners(dbt_resource_props) or OWNERS

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        if dbt_resource_props.get("resource_type") != "model":
            return None
        if _is_personalization(dbt_resource_props):
            parent = PERSONALIZATION_PARENTS.get(dbt_resource_props.get("name"), "watch_events")
            return automation.after_any_partition_of(
                dg.AssetSelection.assets(parent), f"{parent} updated since last build"
            )
        if dbt_resource_props.get("config", {}).get("materialized") == "incremental":
            return automation.after_partition_update()
        return automation.after_any_partition_of(
            dg.AssetSelection.assets("stg_tmdb__titles"), "stg_tmdb__titles updated since last build"
        )


TRANSLATOR = GatewayDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def _build_args(config: DbtConfig) -> list[str]:
    return ["build", *(["--full-refresh"] if config.full_refresh else [])]


def window_env(window: dg.TimeWindow) -> dict[str, str]:
    """The window's first day and its end (the next day's start; the model's `between` re-types that
    day too, which changes nothing: delete+insert of the same rows)."""
    return {"GATEWAY_DBT_MIN_DATE": window.start.strftime("%Y-%m-%d"),
            "GATEWAY_DBT_MAX_DATE": window.end.strftime("%Y-%m-%d")}


def portable_manifest(path: Path) -> dict[str, Any]:
    """The manifest with relation names that work in any database of the warehouse.

    dbt writes the parse-time database into `relation_name` ("gateway"."analytics"."dim_content"),
    and dagster-dbt queries that name for row counts, which Postgres refuses as a cross-database
    reference when DATABASE_URL names another database. Schema-qualified names resolve in
    whichever database the run's profile connects to.
    """
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for node in manifest.get("nodes", {}).values():
        relation = node.get("relation_name")
        if relation and relation.count(".") == 2:
            node["relation_name"] = relation.split(".", 1)[1]
    return manifest


@cache
def dbt_model_assets(partitions_def: dg.PartitionsDefinition) -> tuple[dg.AssetsDefinition, ...]:
    manifest = portable_manifest(dbt_project().manifest_path)
    nodes = manifest_nodes(manifest)

    @dbt_assets(
        manifest=manifest,
        select=INCREMENTAL,
        name="dbt_incremental_models",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=TRANSLATOR,
    )
    def dbt_incremental_models(context: dg.AssetExecutionContext, config: DbtConfig, dbt: DbtWarehouseResource):
        """The run's partition window (one dbt invocation for a whole range), as the environment
        variables the staging model reads: `--vars` would make dbt parse the project again each run."""
        env = window_env(context.partition_time_window)
        window = Window(date.fromisoformat(env["GATEWAY_DBT_MIN_DATE"]),
                        date.fromisoformat(env["GATEWAY_DBT_MAX_DATE"]), WINDOWED_SOURCES)
        yield from build_or_skip(context, config, dbt, nodes, env=env, window=window)

    @dbt_assets(
        manifest=manifest,
        exclude=INCREMENTAL,
        name="dbt_table_models",
        dagster_dbt_translator=TRANSLATOR,
    )
    def dbt_table_models(context: dg.AssetExecutionContext, config: DbtConfig, dbt: DbtWarehouseResource):
        """Whole-table models, rebuilt from what the incremental models hold."""
        yield from build_or_skip(context, config, dbt, nodes)

    return dbt_incremental_models, dbt_table_models


def build_or_skip(context: dg.AssetExecutionContext, config: DbtConfig, dbt: DbtWarehouseResource,
                  nodes: Mapping[str, Node], *, env: Mapping[str, str] | None = None,
                  window: Window | None = None) -> Iterator:
    """Invoke dbt for the selected models unless nothing they read changed; record each successful build."""
    specs = context.assets_def.specs_by_key
    models = {specs[key].metadata[UNIQUE_ID]: key for key in context.selected_asset_keys}
    force = ("full_refresh: true rebuilds from all of raw" if config.full_refresh
             else "force: true in the run config" if config.force else None)
    with dbt.warehouse.connection() as conn:
        decision = decide(conn, nodes, models, project=project_checksum(Path(dbt.project_dir)), window=window,
                          force=force)
    if decision.skip:
        context.log.info(f"dbt not invoked: {decision.reason}")
        yield from _skipped(context, nodes, decision, models)
        return
    context.log.info(f"dbt build: {decision.reason}")
    for event in dbt.stream(_build_args(config), context=context, env=env):
        if isinstance(event, dg.Output):
            event = event.with_metadata({**event.metadata, "dbt_skipped": False, "dbt_build_reason": decision.reason})
        yield event
    # only reached when dbt finished without error: a failed build leaves the last good entry
    with dbt.warehouse.connection() as conn:
        record_builds(conn, nodes, decision, window=window, run_id=context.run.run_id)


def _skipped(context: dg.AssetExecutionContext, nodes: Mapping[str, Node], decision: Decision,
             models: Mapping[str, dg.AssetKey]) -> Iterator[dg.Output]:
    not_run = sorted(k.name for k in context.selected_asset_check_keys)
    if not_run:
        context.log.info(f"dbt tests not run (the models were not rebuilt): {', '.join(not_run)}")
    for uid in decision.models:
        entry, state = decision.entries[uid], decision.before.get(uid)
        run = (entry.run_id or "?")[:8]
        metadata: dict[str, Any] = {
            "dbt_skipped": True,
            "reason": decision.reason,
            "last_build_run_id": entry.run_id or "",
            "last_built_at": dg.MetadataValue.timestamp(entry.recorded_at),
            "dbt_tests": f"not run: the {len(nodes[uid].tests)} dbt tests of {nodes[uid].name} ran with its build in "
                         f"run {run}; this materialisation shows them as skipped",
            "unique_id": uid,
        }
        if isinstance(state, Mapping) and state.get("rows") is not None:
            metadata["dagster/row_count"] = int(state["rows"])
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_key(models[uid]),
                        metadata=metadata)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=list(dbt_model_assets(tmdb_partitions())))
