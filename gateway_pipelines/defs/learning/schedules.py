from datetime import timedelta

import dagster as dg

from gateway_pipelines.defs.learning.jobs import NIGHTLY_JOB


@dg.schedule(
    job_name=NIGHTLY_JOB,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly learning at 02:00 UTC over the day that just ended: skills, causal edges, experiments.",
)
def nightly_learning_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"nightly:{day}", partition_key=day, tags={"gateway/trigger": "schedule"})


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(schedules=[nightly_learning_schedule])
