from datetime import timedelta

import dagster as dg

from gateway_pipelines.lib.tmdb.resource import TMDBResource


@dg.schedule(
    target=dg.AssetSelection.assets("tmdb_titles"),
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Yesterday's TMDB changes from the API at 03:00 UTC (skips, saying why, without a key); "
    "the automation sensor carries them on to search.",
)
def tmdb_api_daily(context: dg.ScheduleEvaluationContext, tmdb: TMDBResource):
    if not tmdb.has_credentials():
        return dg.SkipReason("TMDB_API_KEY / TMDB_READ_TOKEN not set: the API ingest needs one")
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(
        run_key=f"api:{day}",
        partition_key=day,
        run_config={"ops": {"tmdb_titles": {"config": {"source": "api"}}}},
        tags={"gateway/source": "api"},
    )
