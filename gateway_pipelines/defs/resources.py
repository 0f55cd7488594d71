"""The one place resources are wired, from the settings in `gateway_pipelines/settings.py`.

Each value is either `dg.EnvVar(NAME)` (the variable is set: the UI names the variable and never
shows a secret) or the declared default, so the resource tab shows where every value comes from.
Paths under GATEWAY_HOME are resolved here to absolute folders, which is what a person wants to see.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from gateway_pipelines import settings
from gateway_pipelines.lib.warehouse import WarehouseResource


def dbt_executable() -> str:
    # The venv's dbt, so that a run works without the venv on PATH (the UI, the daemon, cron), by
    # way of its shim `gateway-dbt`, which dies with the run worker instead of outliving it.
    for name in ("gateway-dbt", "dbt"):
        candidate = Path(sys.executable).with_name(name)
        if candidate.exists():
            return str(candidate)
    return "dbt"


def warehouse_resource(env: Mapping[str, str] | None = None) -> WarehouseResource:
    """The warehouse alone, for commands that need nothing else (`gateway status`, `db url`): the other
    resources' modules import dbt, scikit-learn and Great Expectations, seconds of start-up they skip."""
    return WarehouseResource(database_url=settings.from_env("DATABASE_URL", env),
                             gateway_home=str(settings.gateway_home(env)))


def build_resources(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource
    from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
    from gateway_pipelines.lib.learning.resource import LearningResource
    from gateway_pipelines.lib.migration.resource import LegacyMigrationResource
    from gateway_pipelines.lib.personalization.resource import PersonalizationResource
    from gateway_pipelines.lib.tmdb.resource import TMDBResource
    from gateway_pipelines.lib.vector_store.resource import VectorSearchResource

    home = settings.gateway_home(env)
    warehouse = warehouse_resource(env)
    return {
        "warehouse": warehouse,
        "dbt": DbtWarehouseResource(
            project_dir=str(settings.DBT_DIR), dbt_executable=dbt_executable(), warehouse=warehouse
        ),
        "tmdb": TMDBResource(
            source=settings.from_env("TMDB_SOURCE", env),
            api_key=settings.from_env("TMDB_API_KEY", env),
            read_token=settings.from_env("TMDB_READ_TOKEN", env),
            base_url=settings.from_env("TMDB_BASE_URL", env),
            landing_dir=str(home / "landing" / "tmdb"),
        ),
        "embeddings": EmbeddingResource(
            provider=settings.from_env("GATEWAY_EMBED_PROVIDER", env),
            openai_api_key=settings.from_env("OPENAI_API_KEY", env),
            openai_base_url=settings.from_env("OPENAI_BASE_URL", env),
            models_dir=str(home / "models"),
            min_coverage=float(settings.value("GATEWAY_EMBED_MIN_COVERAGE", env)),
            max_growth=float(settings.value("GATEWAY_EMBED_MAX_GROWTH", env)),
            auto_refit=settings.value("GATEWAY_EMBED_AUTO_REFIT", env) not in ("0", "false", "no", "off"),
        ),
        "vector_search": VectorSearchResource(artifacts_dir=str(home / "artifacts"),
                                              index_kind=settings.from_env("GATEWAY_VECTOR_INDEX", env)),
        "legacy": LegacyMigrationResource(
            landing_dir=str(home / "landing" / "legacy"), work_dir=str(home / "tmp" / "legacy"),
            samples_dir=str(home / "samples" / "legacy"),
        ),
        "personalization": PersonalizationResource(landing_dir=str(home / "landing" / "events")),
        "learning": LearningResource(landing_dir=str(home / "landing" / "episodes"), models_dir=str(home / "models")),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources())
