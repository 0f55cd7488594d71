"""Daily UTC partitions shared by TMDB ingestion and the dbt models over it."""

import os

import dagster as dg

DEFAULT_START = "2026-01-01"


def tmdb_start_date() -> str:
    return os.environ.get("GATEWAY_TMDB_START_DATE") or DEFAULT_START


daily_partitions = dg.DailyPartitionsDefinition(start_date=tmdb_start_date(), timezone="UTC", end_offset=1)
