"""The nightly causal job, its 02:30 UTC schedule, and the sensor that reruns a past day when a late
event file lands.

* nightly_causal_job: CAUSAL_NIGHTLY_ASSETS (causal_weights, strategy_bandits) for one serve date (daily partitions; a backfill over a
  range of dates from the UI runs one partition each, oldest first);
* nightly_causal_schedule: 02:30 UTC over the day that just ended, after the events' partitions have
  landed (the learning job runs at 02:00);
* late_events_causal_sensor: each event file newly recorded in raw.event_files whose events fall on
  past days reruns the serve dates whose window holds those days (one run per file checksum and day).
  A rerun on unchanged data writes nothing (the run id is a fingerprint of the sample).
"""

import json
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import psycopg

from gateway_pipelines.defs.learning.partitions import learning_partitions
from gateway_pipelines.lib.warehouse import WarehouseResource

CAUSAL_NIGHTLY_ASSETS = ("causal_weights", "strategy_bandits")
CAUSAL_JOB = "nightly_causal_job"
LATE_WINDOW_DAYS = 7  # the asset's default window: a late day reaches the next 7 serve dates
MAX_RERUNS_PER_FILE = 31
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

nightly_causal_job = dg.define_asset_job(
    CAUSAL_JOB, selection=dg.AssetSelection.assets(*CAUSAL_NIGHTLY_ASSETS), partitions_def=learning_partitions(),
    description="Nightly causal learning for one serve date: DML causal weights of the serve-time features, "
    "and the strategy bandits' posteriors.",
)
STRATEGY_LOG_JOB = "strategy_log_simulation_job"
strategy_log_simulation_job = dg.define_asset_job(
    STRATEGY_LOG_JOB, selection=dg.AssetSelection.assets("strategy_log_simulation"),
    description="A simulated log of the four recommendation strategies served under a known policy "
    "(docs/bandits.md), for strategy_bandits to learn from (`make run`).",
)


@dg.schedule(
    job_name=CAUSAL_JOB,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly at 02:30 UTC over the serve date that just ended: causal weights, strategy bandits.",
)
def nightly_causal_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"causal:{day}", partition_key=day, tags={"gateway/trigger": "schedule"})


LATE_FILES_SQL = """
SELECT file_sha256, file_name, min_ts, max_ts, last_ingested_at
FROM raw.event_files
WHERE last_ingested_at > %s AND min_ts IS NOT NULL
ORDER BY last_ingested_at, file_sha256
"""


def late_requests(files: list[tuple], today: date, partition_keys: set[str],
                  window_days: int = LATE_WINDOW_DAYS) -> list[dg.RunRequest]:
    """For each (sha256, name, min_ts, max_ts, ...) with events before today: a run for every serve date
    whose window holds one of its days, up to yesterday (today's run is the schedule's)."""
    requests = []
    for sha, name, min_ts, max_ts, *_ in files:
        first, last = min_ts.date(), max_ts.date()
        if first >= today:
            continue
        high = min(last + timedelta(days=window_days - 1), today - timedelta(days=1))
        days = [first + timedelta(days=k) for k in range((high - first).days + 1)][-MAX_RERUNS_PER_FILE:]
        for d in days:
            key = d.isoformat()
            if key in partition_keys:
                requests.append(dg.RunRequest(run_key=f"late:{sha[:16]}:{key}", partition_key=key,
                                              tags={"gateway/trigger": "sensor", "gateway/file": name}))
    return requests


@dg.sensor(
    name="late_events_causal_sensor", job_name=CAUSAL_JOB, minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reruns nightly_causal_job for the past serve dates a newly landed event file touches "
    "(raw.event_files: its event dates, plus the window after them); one run per file and date.",
)
def late_events_causal_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    since = datetime.fromisoformat(json.loads(context.cursor)["since"]) if context.cursor else EPOCH
    try:
        with warehouse.connection() as conn:
            files = conn.execute(LATE_FILES_SQL, (since,)).fetchall()
    except psycopg.errors.UndefinedTable:
        return dg.SkipReason("the warehouse has no raw.event_files yet: run `gateway run` (migrations) first")
    if not files:
        return dg.SkipReason("no event file landed since the last evaluation")
    partitions = learning_partitions()
    today = date.fromisoformat(partitions.get_last_partition_key())
    requests = late_requests(files, today, set(partitions.get_partition_keys()))
    cursor = json.dumps({"since": max(f[4] for f in files).isoformat()})
    if not requests:
        return dg.SensorResult(skip_reason="the new event files touch no past serve date", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[nightly_causal_job, strategy_log_simulation_job], schedules=[nightly_causal_schedule],
                          sensors=[late_events_causal_sensor])
