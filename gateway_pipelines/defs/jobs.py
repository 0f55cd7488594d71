"""The platform's jobs. `gateway run` executes MAIN_SEQUENCE in order: one job per partitioning."""

import dagster as dg

from gateway_pipelines.defs.tmdb.partitions import daily_partitions

platform_setup_job = dg.define_asset_job(
    "platform_setup_job",
    selection=dg.AssetSelection.groups("warehouse") | dg.AssetSelection.assets("tmdb_genres"),
    description="Schema migrations (validated by GX) and reference data.",
)

tmdb_daily_job = dg.define_asset_job(
    "tmdb_daily_job",
    selection=dg.AssetSelection.assets("tmdb_titles") | dg.AssetSelection.groups("analytics"),
    partitions_def=daily_partitions,
    description="One day of TMDB titles into raw, then the dbt models over that window.",
)

content_vectors_job = dg.define_asset_job(
    "content_vectors_job",
    selection=dg.AssetSelection.groups("embeddings", "vector_store"),
    description="Embed what changed in dim_content, sync the serving table, build the index, prove recall.",
)
