"""Blocking parity gates on `legacy_staging`: Great Expectations over the source's manifest next to
the staged rows. A failure skips `legacy_promotion` in the same run, so the targets stay as they were;
its metadata names up to 20 ids that differ."""


import dagster as dg

from gateway_pipelines.lib.migration import parity
from gateway_pipelines.lib.migration.resource import LegacyMigrationResource
from gateway_pipelines.lib.migration.staging import import_for_run, record_check
from gateway_pipelines.lib.warehouse import WarehouseResource

ASSET = "legacy_staging"


def _result(warehouse: WarehouseResource, run_id: str, name: str, run) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        staged = import_for_run(conn, run_id)
    if staged is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description="no import was staged in this run", metadata={})
    import_id = staged["import_id"]
    if staged["status"] == "unchanged":
        outcome = parity.ParityOutcome(name, True, "source unchanged since its last promoted import (same fingerprint), "
                                       "whose checks passed: nothing staged, nothing to compare")
    else:
        with warehouse.connection() as conn:
            outcome = run(conn, warehouse.url(), import_id, staged)
    with warehouse.connection() as conn:
        record_check(conn, import_id, name, outcome.passed, outcome.description)
    metadata = {
        "import_id": import_id,
        "per_collection": dg.MetadataValue.md(outcome.markdown()),
        "differing_ids": dg.MetadataValue.json(outcome.differing[: parity.MAX_IDS]),
    }
    if outcome.gx is not None:
        metadata["expectations"] = dg.MetadataValue.md(outcome.gx.markdown())
    return dg.AssetCheckResult(passed=outcome.passed, severity=dg.AssetCheckSeverity.ERROR,
                               description=outcome.description, metadata=metadata)


@dg.asset_check(
    asset=ASSET, blocking=True, name="legacy_rows_match_source",
    description="GX: per collection/table, staged row count = the source's own count (less quarantined lines), "
    "equal id sets, every document (md5 of its UTF-8 bytes) and every metadata object (jsonb) equal.",
)
def legacy_rows_match_source(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    return _result(warehouse, context.run.run_id, "legacy_rows_match_source",
                   lambda conn, url, iid, _: parity.check_rows(conn, url, iid))


@dg.asset_check(
    asset=ASSET, blocking=True, name="legacy_vectors_bit_identical",
    description="GX: every vector bit-identical to the source (md5 over its float32 values, computed by the reader "
    "from what the source client returned, and by Postgres from the staged pgvector value), and its dimension equal "
    "to the source's and the collection's.",
)
def legacy_vectors_bit_identical(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    return _result(warehouse, context.run.run_id, "legacy_vectors_bit_identical",
                   lambda conn, url, iid, _: parity.check_vectors(conn, url, iid))


@dg.asset_check(
    asset=ASSET, blocking=True, name="legacy_knn_parity",
    description="GX: for 100 sampled source vectors per collection, the exact top-10 computed on the source side "
    "(from the vectors, not the source's index) against an exact pgvector query on the staged rows, in the "
    "collection's distance space: mean overlap >= min_knn_overlap (0.99).",
)
def legacy_knn_parity(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                      legacy: LegacyMigrationResource):
    return _result(warehouse, context.run.run_id, "legacy_knn_parity",
                   lambda conn, url, iid, _: parity.check_knn(conn, url, iid, min_overlap=legacy.min_knn_overlap))


@dg.asset_check(
    asset=ASSET, blocking=True, name="legacy_rejects_within_limit",
    description="No line of an export was quarantined (meta.legacy_rejects, with line number and reason), unless the "
    "import was started with accept_rejects. Blocking: a partly unreadable export moves only when a person says so.",
)
def legacy_rejects_within_limit(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    def run(conn, url, iid, staged):
        accept = bool(conn.execute("SELECT accept_rejects FROM meta.legacy_imports WHERE import_id = %s",
                                   (iid,)).fetchone()[0])
        return parity.check_rejects(conn, iid, accept=accept)

    return _result(warehouse, context.run.run_id, "legacy_rejects_within_limit", run)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(asset_checks=[legacy_rows_match_source, legacy_vectors_bit_identical, legacy_knn_parity,
                                        legacy_rejects_within_limit])
