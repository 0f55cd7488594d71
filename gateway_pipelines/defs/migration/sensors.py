"""The landing sensor: every Chroma directory, RuVector export or AgentDB file dropped into
$GATEWAY_HOME/landing/legacy/ is migrated once (stage, gates, promotion), keyed by name + fingerprint."""


import json

import dagster as dg

from gateway_pipelines.defs.landing_cursor import remembered, seen_keys
from gateway_pipelines.defs.migration.jobs import legacy_migration_job
from gateway_pipelines.lib.migration.landing import LandedSource, scan_landing
from gateway_pipelines.lib.migration.resource import LegacyMigrationResource


def landing_run_requests(landed: list[LandedSource], seen: set[str]) -> list[dg.RunRequest]:
    """One run per landed source not seen before; the run key also makes Dagster refuse a second launch."""
    return [
        dg.RunRequest(
            run_key=src.run_key,
            run_config={"ops": {"legacy_staging": {"config": {"kind": src.kind, "path": str(src.path)}}}},
            tags={"gateway/source": f"legacy:{src.kind}", "gateway/file": src.path.name},
        )
        for src in landed
        if src.run_key not in seen
    ]


@dg.sensor(
    name="legacy_landing_sensor",
    job=legacy_migration_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Migrates each legacy source dropped into LegacyMigrationResource.landing_dir "
    "($GATEWAY_HOME/landing/legacy/): a Chroma directory, a .jsonl/.json RuVector export or an AgentDB "
    ".sqlite/.db file, once per name + fingerprint.",
)
def legacy_landing_sensor(context: dg.SensorEvaluationContext, legacy: LegacyMigrationResource):
    folder = legacy.landing_path()
    state = json.loads(context.cursor) if context.cursor else {}
    seen = seen_keys(context.cursor)
    landed, cache = scan_landing(folder, state.get("cache"))
    requests = landing_run_requests(landed, set(seen))
    cursor = json.dumps({"seen": remembered(seen, requests), "cache": cache})
    if not requests:
        return dg.SensorResult(skip_reason=f"no new legacy sources in {folder}", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[legacy_landing_sensor])
