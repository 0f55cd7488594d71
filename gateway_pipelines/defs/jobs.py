"""The one job: the whole asset graph for one day. `gateway run` and `gateway ingest` launch it, so
the main path is the graph the UI shows, in a single run."""

import dagster as dg

from gateway_pipelines.defs.tmdb.partitions import tmdb_partitions

OWN_JOB_GROUPS = ("migration", "personalization", "learning")


def build_platform_job(partitions_def: dg.PartitionsDefinition):
    return dg.define_asset_job(
        "platform_job",
        # the catalogue only: the newer domains have their own partitions and jobs
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups(*OWN_JOB_GROUPS),
        partitions_def=partitions_def,
        description="Every asset for one day: schema, genres, that day's titles, dbt, embeddings, vectors "
        "and the index. Unpartitioned assets run in the same run.",
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[build_platform_job(tmdb_partitions())])
