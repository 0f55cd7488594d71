"""Daily UTC partitions shared by TMDB ingestion and the incremental dbt model over it."""

from functools import cache

import dagster as dg

from gateway_pipelines import settings


@cache
def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's partition exists, so a file landed today has somewhere to go
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)


def tmdb_partitions() -> dg.DailyPartitionsDefinition:
    """The partitions as configured (GATEWAY_TMDB_START_DATE), built when definitions load."""
    return daily_partitions(settings.value("GATEWAY_TMDB_START_DATE"))
