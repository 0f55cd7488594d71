"""The dbt models as assets, built by a cached factory when definitions load.

Incremental models are daily-partitioned (a run passes its window to dbt in environment variables,
and a range backfill is one dbt invocation); whole-table models are unpartitioned, so the UI shows one
materialisation of dim_content instead of 335 days of it.
"""

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from gateway_pipelines import automation
from gateway_pipelines.defs.analytics.project import dbt_project
from gateway_pipelines.defs.tmdb.partitions import tmdb_partitions
from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource

INCREMENTAL = "config.materialized:incremental"
OWNERS = ["team:analytics"]


class DbtConfig(dg.Config):
    full_refresh: bool = False  # rebuild incremental models from all of raw, not just the run's window


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
        yield from dbt.stream(_build_args(config), context=context, env=window_env(context.partition_time_window))

    @dbt_assets(
        manifest=manifest,
        exclude=INCREMENTAL,
        name="dbt_table_models",
        dagster_dbt_translator=TRANSLATOR,
    )
    def dbt_table_models(context: dg.AssetExecutionContext, config: DbtConfig, dbt: DbtWarehouseResource):
        """Whole-table models, rebuilt from what the incremental models hold."""
        yield from dbt.stream(_build_args(config), context=context)

    return dbt_incremental_models, dbt_table_models


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=list(dbt_model_assets(tmdb_partitions())))
