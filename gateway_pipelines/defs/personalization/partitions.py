"""Daily UTC partitions of watch events, by event date.

Not the catalogue's partitions (GATEWAY_TMDB_START_DATE, 2026-01-01 by default): MovieLens ratings
go back to 1995-96, and a ratings file lands in the days its ratings were given, so the events'
partitions start on 1995-01-01 (EVENTS_START). Same shape otherwise (the shared `daily_partitions`,
today's partition open). A file spanning many days loads in one run over the partition range
(BackfillPolicy.single_run and the range tags).
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.lib.personalization.events import EVENTS_START

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def events_partitions() -> dg.DailyPartitionsDefinition:
    return daily_partitions(EVENTS_START.isoformat())


def range_tags(span: tuple[date, date] | None, partitions_def: dg.PartitionsDefinition | None = None) -> tuple[
        str | None, dict[str, str]]:
    """(partition_key, tags) for a run over the dates of a file: one partition as partition_key, a
    range as the range tags, or the newest partition when the file has no valid date."""
    partitions_def = partitions_def or events_partitions()
    last = partitions_def.get_last_partition_key()
    if span is None:
        return last, {}
    low, high = (d.isoformat() for d in span)
    high = min(high, last)
    low = min(low, high)
    if low == high:
        return low, {}
    return None, {RANGE_START: low, RANGE_END: high}
