import dagster as dg

from gateway_pipelines.lib.quality.schema_contract import SchemaContract, validate_schema
from gateway_pipelines.lib.warehouse import WarehouseResource


@dg.asset_check(
    asset="warehouse_schema",
    blocking=True,
    description="Great Expectations proves every table in sql/schema_contract.yml has its columns, "
    "types, vector dimensions and valid indexes. Blocks everything downstream.",
)
def warehouse_schema_matches_contract(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    contract = SchemaContract.load()
    outcome, missing = validate_schema(warehouse.url(), contract)
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(contract.signatures)} declared tables, columns and indexes all present"
            if outcome.success
            else f"{len(missing)} declared items missing or different: " + "; ".join(missing[:10])
        ),
        metadata={
            "tables_declared": len(contract.tables),
            "signatures_declared": len(contract.signatures),
            "missing": dg.MetadataValue.json(missing),
            "expectations": dg.MetadataValue.md(outcome.markdown()),
        },
    )

