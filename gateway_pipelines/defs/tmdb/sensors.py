import json

import dagster as dg

from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.lib.state import state_paths
from gateway_pipelines.lib.tmdb.landing import LandingFile, scan_landing

MAX_REMEMBERED = 5000  # run keys kept in the cursor; older files would be re-checked by run_key anyway


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


@dg.sensor(
    job_name="tmdb_daily_job",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests each TMDB export (.json.gz) or dump (.csv) dropped into $GATEWAY_HOME/landing/tmdb/, once.",
)
def tmdb_landing_sensor(context: dg.SensorEvaluationContext):
    folder = state_paths().landing / "tmdb"
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    requests = landing_run_requests(scan_landing(folder), daily_partitions, seen)
    if not requests:
        return dg.SkipReason(f"no new files in {folder}")
    remembered = (sorted(seen) + [r.run_key for r in requests])[-MAX_REMEMBERED:]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(remembered))
