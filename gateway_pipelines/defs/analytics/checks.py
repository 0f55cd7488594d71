from datetime import timezone

import dagster as dg

from gateway_pipelines.lib.quality.reuse import remember_pass, reusable_pass
from gateway_pipelines.lib.quality.titles_suite import STAGED_TITLES, staged_titles_watermark, validate_staged_titles
from gateway_pipelines.lib.warehouse import WarehouseResource

CHECK_NAME = "staged_titles_expectations"


@dg.asset_check(
    asset="stg_tmdb__titles",
    name=CHECK_NAME,
    blocking=True,
    description="Great Expectations on the typed titles: unique keys, titles present, ratings 0-10, "
    "plausible years and runtimes, at most 20% missing overviews. When the table and the suite are "
    "unchanged since a passing validation, that verdict stands (measured: false) instead of a new one.",
)
def staged_titles_expectations(context: dg.AssetCheckExecutionContext,
                               warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:  # before validating: a write during it shows as a change next time
        watermark = staged_titles_watermark(conn)
        last = reusable_pass(conn, CHECK_NAME, watermark)
    rows = (watermark["table"] or {}).get("rows")
    if last is not None:
        at = last.recorded_at.astimezone(timezone.utc)
        return dg.AssetCheckResult(
            passed=True,
            description=f"all expectations met when measured in run {(last.run_id or '?')[:8]} at "
            f"{at:%Y-%m-%d %H:%M:%S} UTC; not measured again: {STAGED_TITLES} and the suite are unchanged since",
            metadata={
                "measured": False,
                "measured_in_run": last.run_id or "",
                "measured_at": dg.MetadataValue.timestamp(last.recorded_at),
                "rows": rows,
                "expectations": dg.MetadataValue.md(last.result.get("expectations", "")),
                "failed": dg.MetadataValue.json([]),
            },
        )
    outcome = validate_staged_titles(warehouse.url())
    failed = [f"{o.expectation}({o.column})" for o in outcome.failed]
    if outcome.success:
        with warehouse.connection() as conn:
            remember_pass(conn, CHECK_NAME, watermark, {"expectations": outcome.markdown(), "rows": rows},
                          context.run.run_id)
    return dg.AssetCheckResult(
        passed=outcome.success,
        description="all expectations met" if outcome.success else "failed: " + ", ".join(failed),
        metadata={"measured": True, "rows": rows, "expectations": dg.MetadataValue.md(outcome.markdown()),
                  "failed": dg.MetadataValue.json(failed)},
    )
