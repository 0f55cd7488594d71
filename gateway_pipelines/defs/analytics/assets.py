import json
import os

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from gateway_pipelines.defs.analytics.project import dbt_project
from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.lib.warehouse import WarehouseResource


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def gateway_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
):
    """dbt build over the run's partition window: one dbt invocation for a whole backfill."""
    # dbt reads its connection from these env vars (dbt/profiles.yml); the resource resolves them
    # from DATABASE_URL or the embedded server.
    os.environ.update(warehouse.dbt_env())
    window = context.partition_time_window
    dbt_vars = {"min_date": window.start.strftime("%Y-%m-%d"), "max_date": window.end.strftime("%Y-%m-%d")}
    yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream().fetch_row_counts()
