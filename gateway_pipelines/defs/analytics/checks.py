import dagster as dg

from gateway_pipelines.lib.quality.titles_suite import validate_staged_titles
from gateway_pipelines.lib.warehouse import WarehouseResource


@dg.asset_check(
    asset="stg_tmdb__titles",
    blocking=True,
    description="Great Expectations on the typed titles: unique keys, titles present, ratings 0-10, "
    "plausible years and runtimes, at most 20% missing overviews.",
)
def staged_titles_expectations(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    outcome = validate_staged_titles(warehouse.url())
    failed = [f"{o.expectation}({o.column})" for o in outcome.failed]
    return dg.AssetCheckResult(
        passed=outcome.success,
        description="all expectations met" if outcome.success else "failed: " + ", ".join(failed),
        metadata={"expectations": dg.MetadataValue.md(outcome.markdown()), "failed": dg.MetadataValue.json(failed)},
    )
