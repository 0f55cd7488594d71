import dagster as dg

from gateway_pipelines.lib.vector_store.index import index_status
from gateway_pipelines.lib.vector_store.recall import measure_recall, sample_queries
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.warehouse import WarehouseResource

VECTOR_HEALTH_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE vector_dims(vector) <> 768),
       count(*) FILTER (WHERE abs(vector_norm(vector) - 1) > 1e-3),
       count(*) FILTER (WHERE vector_norm(vector) = 'NaN'::float8),
       min(vector_norm(vector)), max(vector_norm(vector))
FROM vectors.content_vectors
"""


@dg.asset_check(asset="content_vectors", blocking=True, description="One vector per dim_content title.")
def content_vectors_match_dim_content(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        vectors, titles, missing, extra = conn.execute(
            """
            SELECT (SELECT count(*) FROM vectors.content_vectors),
                   (SELECT count(*) FROM analytics.dim_content),
                   (SELECT count(*) FROM analytics.dim_content d
                     WHERE NOT EXISTS (SELECT 1 FROM vectors.content_vectors v WHERE v.id = d.content_key)),
                   (SELECT count(*) FROM vectors.content_vectors v
                     WHERE NOT EXISTS (SELECT 1 FROM analytics.dim_content d WHERE d.content_key = v.id))
            """
        ).fetchone()
    return dg.AssetCheckResult(
        passed=vectors == titles and missing == 0 and extra == 0,
        description=f"{vectors} vectors for {titles} titles ({missing} missing, {extra} extra)",
        metadata={"vectors": vectors, "titles": titles, "missing": missing, "extra": extra},
    )


@dg.asset_check(asset="content_vectors", blocking=True, description="768 dims, unit norm (±1e-3), no NaN.")
def content_vectors_are_unit_768d(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        total, wrong_dims, off_norm, nan, min_norm, max_norm = conn.execute(VECTOR_HEALTH_SQL).fetchone()
    return dg.AssetCheckResult(
        passed=total > 0 and wrong_dims == 0 and off_norm == 0 and nan == 0,
        description=f"{total} vectors; {wrong_dims} wrong dims, {off_norm} off unit norm, {nan} NaN",
        metadata={"vectors": total, "wrong_dims": wrong_dims, "off_unit_norm": off_norm, "nan": nan,
                  "min_norm": float(min_norm or 0), "max_norm": float(max_norm or 0)},
    )


@dg.asset_check(asset="content_vectors", blocking=True, description="The HNSW index exists and is valid.")
def content_vectors_index_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        status = index_status(conn)
    return dg.AssetCheckResult(
        passed=status.exists and status.valid,
        description=f"exists={status.exists} valid={status.valid} drift="
        + (f"{status.drift_fraction:.1%}" if status.drift_fraction is not None else "unknown (no recorded build)"),
        metadata={"exists": status.exists, "valid": status.valid, "size_bytes": status.size_bytes,
                  "rows_now": status.rows_now, "rows_at_last_build": status.rows_at_last_build or 0,
                  "drift_fraction": round(status.drift_fraction or 0.0, 4)},
    )


@dg.asset_check(
    asset="content_vectors",
    blocking=True,
    description="recall@10 of the HNSW index against exact search, on sampled queries, at the serving "
    "ef_search. Gates everything that serves search.",
)
def content_vectors_recall_at_10(
    warehouse: WarehouseResource, vector_search: VectorSearchResource
) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        queries = sample_queries(conn, n=vector_search.recall_queries, seed=1)
        points = measure_recall(conn, queries, k=10, ef_search_values=(vector_search.ef_search,))
    point = points[0] if points else None
    recall = point.recall if point else 0.0
    return dg.AssetCheckResult(
        passed=point is not None and len(queries) >= min(100, vector_search.recall_queries) and recall >= vector_search.min_recall,
        description=f"recall@10 = {recall:.3f} at ef_search={vector_search.ef_search} over {len(queries)} queries "
        f"(gate {vector_search.min_recall})",
        metadata={"recall_at_10": round(recall, 4), "queries": len(queries), "ef_search": vector_search.ef_search,
                  "p50_ms": round(point.p50_ms, 3) if point else 0.0, "p99_ms": round(point.p99_ms, 3) if point else 0.0},
    )
