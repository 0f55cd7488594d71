"""The nightly learning partitions: one per UTC day, the window of a run ends at the day's end."""

from datetime import date, datetime, time, timedelta, timezone

import dagster as dg

from gateway_pipelines.defs.tmdb.partitions import tmdb_partitions


def learning_partitions() -> dg.DailyPartitionsDefinition:
    # the platform's daily partitions (GATEWAY_TMDB_START_DATE, today included): one calendar
    return tmdb_partitions()


def as_of(partition_key: str) -> datetime:
    """The end of the partition's day (UTC): a run reads episodes with ts <= this."""
    return datetime.combine(date.fromisoformat(partition_key) + timedelta(days=1), time(0), tzinfo=timezone.utc)
