from datetime import timezone

import dagster as dg

from gateway_pipelines.lib.quality.reuse import remember_pass, reusable_pass
from gateway_pipelines.lib.quality.schema_contract import SchemaContract, contract_watermark, validate_schema
from gateway_pipelines.lib.warehouse import WarehouseResource

CHECK_NAME = "warehouse_schema_matches_contract"


@dg.asset_check(
    asset="warehouse_schema",
    name=CHECK_NAME,
    blocking=True,
    description="Great Expectations proves every table in sql/schema_contract.yml has its columns, "
    "types, vector dimensions and valid indexes. Blocks everything downstream. When no migration was "
    "applied since a passing validation and the catalog of the contract's tables is the same, that "
    "verdict stands (measured: false) instead of a new one.",
)
def warehouse_schema_matches_contract(context: dg.AssetCheckExecutionContext,
                                      warehouse: WarehouseResource) -> dg.AssetCheckResult:
    contract = SchemaContract.load()
    with warehouse.connection() as conn:
        watermark = contract_watermark(conn, contract)
        last = reusable_pass(conn, CHECK_NAME, watermark) if watermark is not None else None
    declared = {"tables_declared": len(contract.tables), "signatures_declared": len(contract.signatures)}
    if last is not None:
        at = last.recorded_at.astimezone(timezone.utc)
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{len(contract.signatures)} declared tables, columns and indexes all present, as measured in run "
                f"{(last.run_id or '?')[:8]} at {at:%Y-%m-%d %H:%M:%S} UTC; not measured again: no migration was "
                "applied since, and the catalog of the contract's tables and the contract are the same"
            ),
            metadata={
                **declared,
                "measured": False,
                "measured_in_run": last.run_id or "",
                "measured_at": dg.MetadataValue.timestamp(last.recorded_at),
                "catalog_fingerprint": watermark["catalog"]["sha256"][:16],
                "missing": dg.MetadataValue.json([]),
                "expectations": dg.MetadataValue.md(last.result.get("expectations", "")),
            },
        )
    outcome, missing = validate_schema(warehouse.url(), contract)
    if outcome.success and watermark is not None:
        with warehouse.connection() as conn:
            remember_pass(conn, CHECK_NAME, watermark, {"expectations": outcome.markdown()}, context.run.run_id)
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(contract.signatures)} declared tables, columns and indexes all present"
            if outcome.success
            else f"{len(missing)} declared items missing or different: " + "; ".join(missing[:10])
        ),
        metadata={
            **declared,
            "measured": True,
            "missing": dg.MetadataValue.json(missing),
            "expectations": dg.MetadataValue.md(outcome.markdown()),
        },
    )
