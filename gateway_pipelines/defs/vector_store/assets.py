import base64

import dagster as dg

from gateway_pipelines import automation
from gateway_pipelines.lib.vector_store.history import (
    measure_serving_recall,
    recent_measurements,
    record_measurement,
)
from gateway_pipelines.lib.vector_store.index import index_status, rebuild_reason
from gateway_pipelines.lib.vector_store.loader import sync_content_vectors
from gateway_pipelines.lib.vector_store.recall import recall_plot_png, sweep_table_md, sweep_title, write_plot
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.vector_store.tables import CONTENT_VECTORS_SCHEMA, CONTENT_VECTORS_TABLE, table_metadata
from gateway_pipelines.lib.warehouse import WarehouseResource

K = 10
PLOT_FILE = "content_vectors_recall.png"


class ContentVectorsConfig(dg.Config):
    force_index_rebuild: bool = False  # rebuild even when the index is healthy (e.g. after changing m)


@dg.asset(
    group_name="vector_store",
    owners=["team:search"],
    automation_condition=automation.serving_index(),
    kinds={"pgvector", "postgres"},
    deps=["content_embeddings", "dim_content"],
    metadata=table_metadata(CONTENT_VECTORS_TABLE, CONTENT_VECTORS_SCHEMA),
    description="The search-serving table vectors.content_vectors with its HNSW (cosine) index: synced "
    "from content_embeddings ⋈ dim_content in one transaction; bulk changes, and a missing, invalid or "
    "drifted (>30% of rows changed since its build) index, rebuild it. Each "
    "materialisation measures recall@10 and latency over ef_search and records it in meta.recall_measurements.",
)
def content_vectors(
    context: dg.AssetExecutionContext,
    config: ContentVectorsConfig,
    warehouse: WarehouseResource,
    vector_search: VectorSearchResource,
) -> dg.MaterializeResult:
    with warehouse.connection() as conn:
        # a drifted index (or a requested rebuild) is rebuilt by the sync as a shadow build and swap,
        # like a bulk change, so searches never wait for it; a missing or invalid one the sync sees itself
        rebuild_because = rebuild_reason(index_status(conn), forced=config.force_index_rebuild)
        conn.commit()
        report = sync_content_vectors(conn, bulk_fraction=vector_search.bulk_fraction,
                                      index=vector_search.index_config(), force_rebuild=bool(rebuild_because),
                                      buckets=vector_search.shadow_buckets)
    if report.rebuild_reason:
        rebuild_because = rebuild_because or report.rebuild_reason
        context.log.info(f"content_vectors rebuilt in a shadow and swapped in: {rebuild_because}")
    measurement, history, reused = None, [], False
    with warehouse.connection() as conn:
        status = index_status(conn)
        changed = report.inserted + report.updated + report.deleted
        previous = recent_measurements(conn, 1) if status.exists and status.valid and status.rows_now else []
        if (previous and not changed and not report.index_rebuilt and previous[-1].built_at == status.last_built_at
                and previous[-1].table_rows == status.rows_now and previous[-1].ef_search == vector_search.ef_search):
            # nothing written and the same build: the sweep would measure the same index again
            measurement, reused = previous[-1], True
            history = recent_measurements(conn)
        elif status.exists and status.valid and status.rows_now:
            measured = measure_serving_recall(
                conn, status, serving_ef=vector_search.ef_search, index_rebuilt=report.index_rebuilt, k=K,
                n_queries=vector_search.recall_queries, seed=0,
            )
            measurement = record_measurement(conn, measured, run_id=context.run_id)
            history = recent_measurements(conn)
        else:
            context.log.warning(f"recall not measured: index exists={status.exists} valid={status.valid}, "
                                f"{status.rows_now} rows")

    accounting = report.accounting()
    if not accounting.adds_up:
        context.log.warning(f"content_vectors counts do not add up: {'; '.join(accounting.problems())}")
    build = report.index_build
    metadata: dict = {
        "dagster/row_count": status.rows_now,
        **accounting.as_metadata(),
        "bulk_load": report.bulk,
        "index_rebuilt": report.index_rebuilt,
        "index_rebuild_reason": rebuild_because or ("bulk load" if report.index_rebuilt else "none"),
        "index_valid": status.valid,
        "index_size_mb": round(status.size_bytes / 2**20, 2),
        "hnsw_m": status.m,
        "hnsw_ef_construction": status.ef_construction,
        "ef_search": vector_search.ef_search,
        "duration_s": round(report.seconds, 3),
    }
    if status.rows_at_last_build is not None:
        metadata["rows_at_last_build"] = status.rows_at_last_build
    if status.drift_fraction is not None:
        metadata["index_drift_fraction"] = dg.MetadataValue.float(round(status.drift_fraction, 4))
    if status.last_built_at is not None:
        metadata["index_built_at"] = dg.MetadataValue.timestamp(status.last_built_at)
    if build:
        metadata["index_build_s"] = round(build.duration_s, 3)
        metadata["index_parallel_workers"] = build.parallel_workers_launched if build.parallel_workers_launched is not None else -1
    metadata["recall_measured"] = measurement is not None and not reused
    metadata["recall_reused"] = reused  # nothing changed since measurement recall_measurement_id
    metadata["embedding_model"] = report.embedding_model or ""
    metadata["index_kind"] = vector_search.index_kind
    if report.skipped:
        metadata["awaiting_model_swap"] = report.skipped
    if report.shadow is not None:
        sh = report.shadow
        metadata.update({
            "shadow_build_id": sh.build_id,
            "shadow_resumed": sh.resumed,
            "shadow_buckets_loaded": f"{sh.buckets_loaded_now} of {sh.buckets} this run",
            "swap_ms": dg.MetadataValue.float(round(sh.swap_ms, 2)),
            "served_generation": sh.generation,
            "shadow_timings_s": dg.MetadataValue.json({k: round(v, 3) for k, v in sh.timings.items()}),
        })
    if measurement is not None:
        metadata.update({
            "recall_at_serving_ef": dg.MetadataValue.float(round(measurement.recall, 4)),
            "p50_ms": dg.MetadataValue.float(round(measurement.p50_ms, 3)),
            "p99_ms": dg.MetadataValue.float(round(measurement.p99_ms, 3)),
            "recall_queries": measurement.queries,
            "recall_target": dg.MetadataValue.float(vector_search.min_recall),
            "recall_floor": dg.MetadataValue.float(vector_search.recall_floor),
            "recall_measurement_id": measurement.id,
            "recall_by_ef_search": dg.MetadataValue.md(
                sweep_table_md(measurement.sweep, k=K, serving_ef=measurement.ef_search)
            ),
        })
        title = sweep_title(measurement.table_rows, K, measurement.m, measurement.ef_construction)
        png = recall_plot_png(
            measurement.sweep, history=history, serving_ef=measurement.ef_search, min_recall=vector_search.min_recall,
            recall_floor=vector_search.recall_floor, k=K, title=title,
        )
        metadata["recall_plot"] = dg.MetadataValue.md(
            f"![{title}; below: the last {len(history)} measurements](data:image/png;base64,"
            f"{base64.b64encode(png).decode()})"
        )
        if vector_search.artifacts_dir:
            metadata["recall_plot_file"] = dg.MetadataValue.path(str(write_plot(vector_search.artifacts_dir, PLOT_FILE, png)))
    return dg.MaterializeResult(metadata=metadata)
