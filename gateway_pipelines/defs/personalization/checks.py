"""Gates over the events ledger (raw.event_files), on fct_watch_events.

They sit on the unpartitioned fact rather than on the daily-partitioned watch_events: a check of a
partitioned asset is planned once per partition, and a MovieLens file spans thousands of days.
"""

import dagster as dg

from gateway_pipelines.lib.warehouse import WarehouseResource

MAX_QUARANTINE_RATIO = 0.2


@dg.asset_check(asset="fct_watch_events", blocking=True,
                description="for every ingested file, lines read = loaded + quarantined + duplicates (raw.event_files)")
def event_file_counts_add_up(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        rows = conn.execute(
            "SELECT file_name, lines_read, loaded, quarantined, duplicates FROM raw.event_files "
            "ORDER BY last_ingested_at DESC").fetchall()
        loaded_total = conn.execute("SELECT count(*) FROM raw.watch_events").fetchone()[0]
        rejects_total = conn.execute("SELECT count(*) FROM raw.watch_event_rejects").fetchone()[0]
    bad = [r[0] for r in rows if r[1] != r[2] + r[3] + r[4]]
    return dg.AssetCheckResult(
        passed=not bad,
        description=(f"{len(rows)} files: every one adds up" if not bad else f"counts do not add up for {', '.join(bad)}"),
        metadata={"files": len(rows), "files_not_adding_up": dg.MetadataValue.json(bad),
                  "lines_read": sum(r[1] for r in rows), "raw_watch_events": loaded_total,
                  "raw_watch_event_rejects": rejects_total},
    )


@dg.asset_check(asset="fct_watch_events",
                description=f"no ingested file had more than {MAX_QUARANTINE_RATIO:.0%} of its lines quarantined "
                "(WARN: the good lines are loaded all the same)")
def event_file_quarantine_ratio(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        rows = conn.execute(
            "SELECT file_name, quarantined::float8 / nullif(lines_read, 0) FROM raw.event_files").fetchall()
    over = {name: round(ratio, 4) for name, ratio in rows if ratio is not None and ratio > MAX_QUARANTINE_RATIO}
    return dg.AssetCheckResult(
        passed=not over, severity=dg.AssetCheckSeverity.WARN,
        description=("no file over the limit" if not over else f"over {MAX_QUARANTINE_RATIO:.0%}: {over}"),
        metadata={"files_over_limit": dg.MetadataValue.json(over)},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(asset_checks=[event_file_counts_add_up, event_file_quarantine_ratio])
