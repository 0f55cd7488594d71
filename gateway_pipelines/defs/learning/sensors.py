"""Sensors of the learning domain: new episode files, many new episodes, failed learning runs."""


import json

import dagster as dg
import psycopg

from gateway_pipelines.defs.landing_cursor import remembered, seen_keys
from gateway_pipelines.defs.learning.jobs import EPISODES_JOB, JOBS, NIGHTLY_JOB
from gateway_pipelines.defs.learning.partitions import learning_partitions
from gateway_pipelines.lib.learning.episodes import scan_episode_landing
from gateway_pipelines.lib.learning.resource import LearningResource
from gateway_pipelines.lib.warehouse import WarehouseResource

NEW_EPISODES_SQL = (
    "SELECT count(*), coalesce(max(id), 0) FROM memory.episodes "
    "WHERE id > coalesce((SELECT watermark FROM memory.learner_state WHERE name = 'consolidation'), 0)"
)
RECORD_FAILURE_SQL = (
    "INSERT INTO memory.learning_run_failures (run_id, job_name, partition_key, error) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (run_id) DO NOTHING"
)


def landing_requests(files, seen: set[str]) -> list[dg.RunRequest]:
    requests = []
    for path, sha in files:
        key = f"{path.name}:{sha[:16]}"
        if key in seen:
            continue
        requests.append(dg.RunRequest(
            run_key=key,
            run_config={"ops": {"agent_episodes": {"config": {"source": "file", "path": str(path)}}}},
            tags={"gateway/file": path.name, "gateway/trigger": "sensor"},
        ))
    return requests


@dg.sensor(
    name="episodes_landing_sensor", job_name=EPISODES_JOB, minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Loads each AgentDB-shaped *.jsonl dropped into $GATEWAY_HOME/landing/episodes once "
    "(run key = name + checksum; a corrected file loads again, its unchanged lines count as duplicates).",
)
def episodes_landing_sensor(context: dg.SensorEvaluationContext, learning: LearningResource):
    folder = learning.landing_path()
    seen = seen_keys(context.cursor)
    requests = landing_requests(scan_episode_landing(folder), set(seen))
    if not requests:
        return dg.SkipReason(f"no new files in {folder}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(remembered(seen, requests)))


def new_episodes_request(count: int, max_id: int, threshold: int, partition: str):
    if count <= threshold:
        return dg.SkipReason(f"{count} new episodes since the last consolidation (threshold {threshold})")
    return dg.RunRequest(run_key=f"new-episodes:{max_id}", partition_key=partition,
                         tags={"gateway/trigger": "sensor", "gateway/new_episodes": str(count)})


@dg.sensor(
    name="new_episodes_sensor", job_name=NIGHTLY_JOB, minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the nightly learning job for today when more than LearningResource."
    "new_episodes_threshold episodes arrived since the last consolidation (one run per watermark).",
)
def new_episodes_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource,
                        learning: LearningResource):
    try:
        with warehouse.connection() as conn:
            count, max_id = conn.execute(NEW_EPISODES_SQL).fetchone()
    except psycopg.errors.UndefinedTable:
        return dg.SkipReason("the warehouse has no memory tables yet: run `gateway run` (migrations) first")
    return new_episodes_request(int(count), int(max_id), learning.new_episodes_threshold,
                                learning_partitions().get_last_partition_key())


def _failure_message(context: dg.RunFailureSensorContext) -> str:
    failure = getattr(context, "failure_event", None)
    message = getattr(failure, "message", None) or "run failed"
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data and data.error:
            message = f"{event.step_key}: {data.error.message.strip()}"
            break
    return message[:4000]


@dg.run_failure_sensor(
    name="learning_run_failure_sensor", monitored_jobs=JOBS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed learning run (job, partition, first step error) in memory.learning_run_failures.",
)
def learning_run_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
    run = context.dagster_run
    with warehouse.connection() as conn:
        conn.execute(RECORD_FAILURE_SQL, (run.run_id, run.job_name, run.tags.get("dagster/partition"),
                                          _failure_message(context)))


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=[episodes_landing_sensor, new_episodes_sensor, learning_run_failure_sensor])
