"""Legacy migrations: `legacy_staging` reads one source into migration_staging (with its manifest),
the blocking parity checks in checks.py judge it, and `legacy_promotion` upserts it into the targets
in one transaction. Dagster skips the promotion when a blocking check fails, so the targets are
untouched. Both are started by the landing sensor or a person (`gateway migrate`), never by automation:
a dry run stages and checks without promoting, and must stay that way.
"""


import time

import dagster as dg

from gateway_pipelines.lib.migration.promote import PromotionError, promote
from gateway_pipelines.lib.migration.records import LegacySourceError
from gateway_pipelines.lib.migration.resource import LegacyMigrationResource
from gateway_pipelines.lib.migration.sources import KINDS, open_reader
from gateway_pipelines.lib.migration.staging import (
    fail_import,
    import_for_run,
    mark_unchanged,
    stage_source,
    start_import,
    unchanged_report,
)
from gateway_pipelines.lib.warehouse import WarehouseResource, connect

GROUP = "migration"
OWNERS = ["team:platform"]

STAGING_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("import_id", "bigint", description="meta.legacy_imports row of this import"),
    dg.TableColumn("collection", "text", description="Chroma collection, export name, or AgentDB table"),
    dg.TableColumn("source_id", "text", description="the record's id in the source"),
    dg.TableColumn("target", "text", description="where the record goes: vectors.vector_store, memory.*"),
    dg.TableColumn("document", "text", description="the document exactly as the source client returned it"),
    dg.TableColumn("metadata", "jsonb", description="metadata, or the converted AgentDB row"),
    dg.TableColumn("vec", "vector", description="the vector, float32 values as in the source"),
])
PROMOTION_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("source_key", "text", description="kind:path of the source (meta.legacy_id_map)"),
    dg.TableColumn("collection", "text", description="Chroma collection, export name, or AgentDB table"),
    dg.TableColumn("source_id", "text", description="the record's id in the source"),
    dg.TableColumn("target_table", "text", description="vectors.vector_store or memory.*"),
    dg.TableColumn("target_id", "text", description="the row's id in the target table"),
    dg.TableColumn("fingerprint", "text", description="md5 of vector, document and metadata as last written"),
])


class LegacySourceConfig(dg.Config):
    kind: str  # chroma | ruvector | agentdb
    path: str = ""  # the Chroma directory, the export file, the AgentDB file
    sample: bool = False  # migrate the shipped demo source of `kind` (written under $GATEWAY_HOME/samples/legacy)
    dry_run: bool = False  # recorded in the ledger; the dry-run job has no promotion step
    accept_rejects: bool = False  # migrate an export's readable lines, leaving its quarantined ones behind


@dg.asset(
    name="legacy_staging",
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres", "python"},
    deps=["warehouse_schema"],
    tags={"gateway/trigger": "sensor"},
    metadata={"dagster/table_name": "migration_staging.records", "dagster/column_schema": STAGING_SCHEMA},
    description="Reads one legacy source (a ChromaDB directory, a RuVector JSON/JSONL export or an AgentDB SQLite "
    "file; config kind + path) in batches into migration_staging, with a manifest of ids and float32 checksums "
    "computed on the source side and the exact top-10 of 100 sampled source vectors per collection. Writes no "
    "target. A source whose fingerprint equals its last promoted import is not read again (0 rows).",
)
def legacy_staging(
    context: dg.AssetExecutionContext,
    config: LegacySourceConfig,
    warehouse: WarehouseResource,
    legacy: LegacyMigrationResource,
) -> dg.MaterializeResult:
    if config.kind not in KINDS:
        raise dg.Failure(description=f"legacy_staging: unknown kind {config.kind!r}; use one of {', '.join(KINDS)}",
                         allow_retries=False)
    started = time.perf_counter()
    url = warehouse.url()
    with warehouse.connection() as conn:
        if conn.execute("SELECT to_regclass('meta.legacy_imports')").fetchone()[0] is None:
            raise dg.Failure(description="the warehouse has no migration ledger (meta.legacy_imports): apply the schema "
                             "first (`gateway db migrate`, or materialise warehouse_schema)", allow_retries=False)
    path = config.path
    if config.sample:
        from gateway_pipelines.lib.migration.samples import sample_source

        if not legacy.samples_dir:
            raise dg.Failure(description="legacy_staging: sample=true needs LegacyMigrationResource.samples_dir",
                             allow_retries=False)
        path = str(sample_source(config.kind, legacy.samples_dir))
    elif not path:
        raise dg.Failure(description="legacy_staging: config needs path (the source to migrate) or sample: true",
                         allow_retries=False)
    try:
        reader = open_reader(config.kind, path, batch_size=legacy.batch_size)
    except LegacySourceError as exc:
        raise dg.Failure(description=f"{config.kind} source refused: {exc}", allow_retries=False) from None
    try:
        fingerprint = reader.fingerprint()
        with warehouse.connection() as conn:
            import_id, same = start_import(conn, kind=config.kind, path=path, fingerprint=fingerprint,
                                           run_id=context.run_id, dry_run=config.dry_run)
            conn.execute("UPDATE meta.legacy_imports SET accept_rejects = %s WHERE import_id = %s",
                         (config.accept_rejects, import_id))
        if same is not None:
            with warehouse.connection() as conn:
                mark_unchanged(conn, import_id, same)
            report = unchanged_report(import_id, config.kind, path, fingerprint, same)
            context.log.info(f"source unchanged since import {same} (fingerprint {fingerprint[:20]}…): nothing staged")
        else:
            try:
                report = stage_source(
                    lambda: connect(url), reader, import_id=import_id, knn_queries=legacy.knn_queries, k=legacy.knn_k,
                    spill_dir=legacy.spill_path(),
                    on_collection=lambda c: context.log.info(f"staged {c.name}: {c.staged} rows → {c.target}"),
                )
            except LegacySourceError as exc:
                with warehouse.connection() as conn:
                    fail_import(conn, import_id, str(exc))
                raise dg.Failure(
                    description=f"{config.kind} source {path} refused, nothing was written to the targets: {exc}",
                    metadata={"import_id": import_id}, allow_retries=False,
                ) from None
    finally:
        reader.close()
    metadata: dict = {
        "dagster/row_count": report.staged,
        "import_id": import_id,
        "source_kind": config.kind,
        "source_path": dg.MetadataValue.path(str(reader.path)),
        "fingerprint": fingerprint,
        "status": report.status,
        "dry_run": config.dry_run,
        "rows_staged": report.staged,
        "rows_rejected": report.rejects,
        "would_insert": sum(c.insert for c in report.collections),
        "would_update": sum(c.update for c in report.collections),
        "rows_unchanged": sum(c.unchanged for c in report.collections),
        "read_s": round(report.read_seconds, 3),
        "duration_s": round(time.perf_counter() - started, 3),
    }
    if report.status == "unchanged":
        metadata["unchanged_since_import"] = report.unchanged_since
    else:
        metadata["collections"] = dg.MetadataValue.md(report.markdown())
        metadata["source_state"] = dg.MetadataValue.json(_jsonable(report.source_state))
        if report.seconds > 0:
            metadata["rows_per_s"] = round(report.staged / report.seconds, 1)
    return dg.MaterializeResult(metadata=metadata)


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=str))


@dg.asset(
    name="legacy_promotion",
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres", "pgvector"},
    deps=[legacy_staging],
    tags={"gateway/trigger": "sensor"},
    metadata={"dagster/table_name": "meta.legacy_id_map", "dagster/column_schema": PROMOTION_SCHEMA},
    description="Upserts the import staged in the same run into vectors.vector_store and memory.* in ONE transaction, "
    "only after every blocking parity check of legacy_staging passed (Dagster skips it otherwise): new and changed "
    "records only (0 rows on a re-run), AgentDB ids mapped through meta.legacy_id_map, then verified against the "
    "manifest before the commit.",
)
def legacy_promotion(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connection() as conn:
        staged = import_for_run(conn, context.run_id)
    if staged is None:
        raise dg.Failure(description="legacy_promotion: no import was staged in this run; run legacy_migration_job "
                         "(or `gateway migrate`), which stages, checks and promotes in one run", allow_retries=False)
    if staged["status"] == "unchanged":
        return dg.MaterializeResult(metadata={
            "dagster/row_count": 0, "import_id": staged["import_id"], "rows_written": 0, "rows_inserted": 0,
            "rows_updated": 0, "status": "unchanged: the source's fingerprint equals its last promoted import",
        })
    if staged["dry_run"]:
        return dg.MaterializeResult(metadata={
            "dagster/row_count": 0, "import_id": staged["import_id"], "rows_written": 0, "rows_inserted": 0,
            "rows_updated": 0, "status": "dry run: staged and checked, nothing swapped",
        })
    if staged["status"] != "staged":
        raise dg.Failure(description=f"legacy_promotion: import {staged['import_id']} is {staged['status']}, not staged",
                         allow_retries=False)
    try:
        with warehouse.connection() as conn:
            report = promote(conn, staged["import_id"], staged["source_key"])
    except PromotionError as exc:
        with warehouse.connection() as conn:
            conn.execute("UPDATE meta.legacy_imports SET status = 'failed', finished_at = now() WHERE import_id = %s",
                         (staged["import_id"],))
        raise dg.Failure(description=f"promotion of import {staged['import_id']} rolled back: {exc}",
                         allow_retries=False) from None
    with warehouse.connection() as conn:
        checks = conn.execute("SELECT checks FROM meta.legacy_imports WHERE import_id = %s",
                              (staged["import_id"],)).fetchone()[0] or {}
    parity_md = "\n".join(["| parity check | verdict | figures |", "|---|---|---|"] + [
        f"| {name} | {'✅' if v.get('passed') else '❌'} | {v.get('description', '')} |"
        for name, v in sorted(checks.items()) if isinstance(v, dict)])
    inserted = sum(v["inserted"] for v in report.written.values())
    updated = sum(v["updated"] for v in report.written.values())
    unchanged = sum(v["unchanged"] for v in report.written.values())
    return dg.MaterializeResult(metadata={
        "dagster/row_count": report.rows_written,
        "import_id": staged["import_id"],
        "rows_written": report.rows_written,
        "rows_inserted": inserted,
        "rows_updated": updated,
        "rows_unchanged": unchanged,
        "rows_verified": report.verified,
        "hnsw_rebuilt_for_bulk_load": ", ".join(report.rebuilt_indexes) or "none",
        "written": dg.MetadataValue.md(report.markdown()),
        "parity": dg.MetadataValue.md(parity_md),
        "hnsw_overlap": dg.MetadataValue.md(report.hnsw.get("markdown", "(no sampled queries)")),
        "duration_s": round(report.seconds, 3),
    })


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[legacy_staging, legacy_promotion])
