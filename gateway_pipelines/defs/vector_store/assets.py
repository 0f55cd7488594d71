import base64

import dagster as dg

from gateway_pipelines.lib.state import state_paths
from gateway_pipelines.lib.vector_store.index import build_hnsw, index_status
from gateway_pipelines.lib.vector_store.loader import sync_content_vectors
from gateway_pipelines.lib.vector_store.recall import measure_recall, recall_plot_png, sample_queries
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.warehouse import WarehouseResource

EF_SEARCH_SWEEP = (20, 40, 100, 200)


class ContentVectorsConfig(dg.Config):
    force_index_rebuild: bool = False  # the drift sensor sets this when the table moved far from its build


@dg.asset(
    group_name="vector_store",
    kinds={"pgvector", "postgres"},
    deps=["content_embeddings", "dim_content"],
    description="The search-serving table vectors.content_vectors with its HNSW (cosine) index: synced "
    "from content_embeddings ⋈ dim_content in one transaction; bulk changes rebuild the index.",
)
def content_vectors(
    context: dg.AssetExecutionContext,
    config: ContentVectorsConfig,
    warehouse: WarehouseResource,
    vector_search: VectorSearchResource,
) -> dg.MaterializeResult:
    with warehouse.connection() as conn:
        report = sync_content_vectors(conn, bulk_fraction=vector_search.bulk_fraction, index=vector_search.index_config())
    if config.force_index_rebuild and not report.index_rebuilt:
        with warehouse.connection() as conn:
            report.index_build = build_hnsw(conn, config=vector_search.index_config())
            report.index_rebuilt = True
    with warehouse.connection() as conn:
        status = index_status(conn)
        sweep = sorted(set(EF_SEARCH_SWEEP) | {vector_search.ef_search})
        queries = sample_queries(conn, n=vector_search.recall_queries, seed=0)
        points = measure_recall(conn, queries, k=10, ef_search_values=sweep) if len(queries) else []
    png = recall_plot_png(points) if points else b""
    plot_path = state_paths().home / "artifacts" / "content_vectors_recall.png"
    if png:
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot_path.write_bytes(png)
    table = "| ef_search | recall@10 | p50 ms | p99 ms | QPS |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {p.ef_search} | {p.recall:.3f} | {p.p50_ms:.2f} | {p.p99_ms:.2f} | {p.qps:.0f} |" for p in points
    )
    build = report.index_build
    metadata = {
        "dagster/row_count": status.rows_now,
        "rows_inserted": report.inserted,
        "rows_updated": report.updated,
        "rows_deleted": report.deleted,
        "rows_unchanged": report.unchanged,
        "bulk_load": report.bulk,
        "index_rebuilt": report.index_rebuilt,
        "index_valid": status.valid,
        "index_size_mb": round(status.size_bytes / 2**20, 2),
        "hnsw_m": status.m,
        "hnsw_ef_construction": status.ef_construction,
        "ef_search": vector_search.ef_search,
        "recall_by_ef_search": dg.MetadataValue.md(table),
        "duration_s": round(report.seconds, 3),
    }
    if build:
        metadata["index_build_s"] = round(build.duration_s, 3)
        metadata["index_parallel_workers"] = build.parallel_workers_launched if build.parallel_workers_launched is not None else -1
    if png:
        metadata["recall_plot"] = dg.MetadataValue.md(
            f"![recall and latency against ef_search](data:image/png;base64,{base64.b64encode(png).decode()})"
        )
        metadata["recall_plot_file"] = dg.MetadataValue.path(str(plot_path))
    return dg.MaterializeResult(metadata=metadata)
