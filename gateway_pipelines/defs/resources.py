"""The one place resources are registered. Values resolve when a run starts, never at import."""

import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from gateway_pipelines.defs.analytics.project import dbt_project
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.tmdb.resource import TMDBResource
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.warehouse import WarehouseResource


def dbt_executable() -> str:
    # The venv's dbt, so that a run works without the venv on PATH (the UI, the daemon, cron).
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(),
            "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
            "tmdb": TMDBResource(),
            "embeddings": EmbeddingResource(),
            "vector_search": VectorSearchResource(),
        }
    )
