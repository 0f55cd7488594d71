import os
from datetime import timedelta

import dagster as dg


@dg.schedule(
    job_name="tmdb_daily_job",
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Yesterday's TMDB changes from the API at 03:00 UTC (skips, saying why, without a key).",
)
def tmdb_api_daily(context: dg.ScheduleEvaluationContext):
    if not (os.environ.get("TMDB_API_KEY") or os.environ.get("TMDB_READ_TOKEN")):
        return dg.SkipReason("TMDB_API_KEY / TMDB_READ_TOKEN not set: the API ingest needs one")
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(
        run_key=f"api:{day}",
        partition_key=day,
        run_config={"ops": {"tmdb_titles": {"config": {"source": "api"}}}},
        tags={"gateway/source": "api"},
    )
