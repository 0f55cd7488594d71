import json

import dagster as dg

from gateway_pipelines.defs.landing_cursor import remembered, seen_keys
from gateway_pipelines.defs.tmdb.partitions import tmdb_partitions
from gateway_pipelines.lib.tmdb.landing import LandingFile, scan_landing
from gateway_pipelines.lib.tmdb.resource import TMDBResource


def landing_run_requests(
    files: list[LandingFile], partitions_def: dg.PartitionsDefinition, seen: set[str]
) -> list[dg.RunRequest]:
    """One run per landed file not seen before. The run_key (name + checksum) also makes Dagster
    itself refuse a second launch, so a lost cursor cannot double-ingest."""
    last = partitions_def.get_last_partition_key()
    requests = []
    for landed in files:
        if landed.run_key in seen:
            continue
        partition = landed.day.isoformat() if landed.day else last
        if landed.day and not partitions_def.has_partition_key(partition):
            partition = last  # an export older than the partitions' start date lands in the newest day
        requests.append(
            dg.RunRequest(
                run_key=landed.run_key,
                partition_key=partition,
                run_config={"ops": {"tmdb_titles": {"config": {"source": landed.source, "path": str(landed.path)}}}},
                tags={"gateway/source": landed.source, "gateway/file": landed.path.name},
            )
        )
    return requests


def build_landing_sensor(partitions_def: dg.PartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="tmdb_landing_sensor",
        target=dg.AssetSelection.assets("tmdb_titles"),
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Ingests each TMDB export (.json.gz) or dump (.csv) dropped into the landing folder "
        "(TMDBResource.landing_dir, $GATEWAY_HOME/landing/tmdb/), once; the automation sensor then "
        "carries it through dbt, embeddings and the index.",
    )
    def tmdb_landing_sensor(context: dg.SensorEvaluationContext, tmdb: TMDBResource):
        folder = tmdb.landing_path()
        seen = seen_keys(context.cursor)
        requests = landing_run_requests(scan_landing(folder), partitions_def, set(seen))
        if not requests:
            return dg.SkipReason(f"no new files in {folder}")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(remembered(seen, requests)))

    return tmdb_landing_sensor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[build_landing_sensor(tmdb_partitions())])
