"""The events landing sensor: one run of watch_events per file (name + checksum), over the file's days."""

import json
from pathlib import Path

import dagster as dg

from gateway_pipelines.defs.landing_cursor import remembered, seen_keys
from gateway_pipelines.defs.personalization.partitions import events_partitions, range_tags
from gateway_pipelines.lib.personalization.events import date_span, file_sha256, scan_landing
from gateway_pipelines.lib.personalization.resource import PersonalizationResource


def run_key(path: Path, sha256: str) -> str:
    # name and checksum: the same file dropped twice runs once; a corrected file runs again
    return f"{path.name}:{sha256[:16]}"


def ingest_request(path: Path, partitions_def: dg.PartitionsDefinition, *, key: str | None = None,
                   links: Path | None = None) -> dg.RunRequest:
    partition, tags = range_tags(date_span(path), partitions_def)
    config = {"paths": [str(path)], **({"links": str(links)} if links else {})}
    return dg.RunRequest(
        run_key=key, partition_key=partition, run_config={"ops": {"watch_events": {"config": config}}},
        tags={**tags, "gateway/file": path.name},
    )


def build_events_sensor(partitions_def: dg.PartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="watch_events_landing_sensor",
        target=dg.AssetSelection.assets("watch_events"),
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Ingests each watch-event file dropped into $GATEWAY_HOME/landing/events/ (JSONL, or a "
        "MovieLens *ratings*.csv with its links.csv), once per name + checksum, over the days its events "
        "fall in; the automation sensor then carries it through dbt, the preference vectors and the evaluation.",
    )
    def watch_events_landing_sensor(context: dg.SensorEvaluationContext, personalization: PersonalizationResource):
        folder = personalization.landing_path()
        seen = set(seen_keys(context.cursor))
        requests = []
        for path in scan_landing(folder):
            key = run_key(path, file_sha256(path))
            if key not in seen:
                requests.append(ingest_request(path, partitions_def, key=key))
        if not requests:
            return dg.SkipReason(f"no new event files in {folder}")
        return dg.SensorResult(run_requests=requests,
                               cursor=json.dumps(remembered(seen_keys(context.cursor), requests)))

    return watch_events_landing_sensor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[build_events_sensor(events_partitions())])
