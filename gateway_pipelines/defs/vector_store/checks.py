"""Gates on content_vectors, with severities chosen per check.

ERROR + blocking where a failure means search would serve wrong or missing results: downstream
consumers must not run on it. WARN where search still works but is worse than intended: it shows in
the UI and does not stop the run. The recall check is both, depending on the figure it measures.
"""

import dagster as dg

from gateway_pipelines.lib.vector_store.index import index_status
from gateway_pipelines.lib.vector_store.recall import recall_verdict, sample_queries
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.vector_store.shadow import serving_state
from gateway_pipelines.lib.vector_store.tuning import record, still_valid, tune_ef_search, tuned_for
from gateway_pipelines.lib.warehouse import WarehouseResource

K = 10
# the asset samples its sweep queries with seed 0; the gate uses others, so it is not judged on the
# very queries the plot was drawn from
CHECK_QUERY_SEED = 1

VECTOR_HEALTH_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE vector_dims(vector) <> 768),
       count(*) FILTER (WHERE abs(vector_norm(vector) - 1) > 1e-3),
       count(*) FILTER (WHERE vector_norm(vector) = 'NaN'::float8),
       min(vector_norm(vector)), max(vector_norm(vector))
FROM vectors.content_vectors
"""

MATCH_SQL = """
SELECT (SELECT count(*) FROM vectors.content_vectors),
       (SELECT count(*) FROM analytics.dim_content),
       (SELECT count(*) FROM analytics.dim_content d
         WHERE NOT EXISTS (SELECT 1 FROM vectors.content_vectors v WHERE v.id = d.content_key)),
       (SELECT count(*) FROM vectors.content_vectors v
         WHERE NOT EXISTS (SELECT 1 FROM analytics.dim_content d WHERE d.content_key = v.id))
"""

_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}


@dg.asset_check(
    asset="content_vectors",
    blocking=True,
    description="One vector per dim_content title. ERROR, blocking: a missing title cannot be found by "
    "search at all, and an extra one is a title the catalogue no longer has.",
)
def content_vectors_match_dim_content(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        vectors, titles, missing, extra = conn.execute(MATCH_SQL).fetchone()
    return dg.AssetCheckResult(
        passed=vectors == titles and missing == 0 and extra == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{vectors} vectors for {titles} titles ({missing} missing, {extra} extra)",
        metadata={"vectors": vectors, "titles": titles, "missing": missing, "extra": extra},
    )


@dg.asset_check(
    asset="content_vectors",
    blocking=True,
    description="768 dims, unit norm (±1e-3), no NaN. ERROR, blocking: cosine distances on anything else "
    "rank titles wrongly, silently.",
)
def content_vectors_are_unit_768d(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        total, wrong_dims, off_norm, nan, min_norm, max_norm = conn.execute(VECTOR_HEALTH_SQL).fetchone()
    return dg.AssetCheckResult(
        passed=total > 0 and wrong_dims == 0 and off_norm == 0 and nan == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{total} vectors; {wrong_dims} wrong dims, {off_norm} off unit norm, {nan} NaN",
        metadata={"vectors": total, "wrong_dims": wrong_dims, "off_unit_norm": off_norm, "nan": nan,
                  "min_norm": float(min_norm or 0), "max_norm": float(max_norm or 0)},
    )


@dg.asset_check(
    asset="content_vectors",
    blocking=True,
    description="The HNSW index exists, is valid, and is of the kind search orders by (meta.vector_serving). "
    "ERROR, blocking: without it every search is a sequential scan of the whole table.",
)
def content_vectors_index_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connection() as conn:
        status = index_status(conn)
        served_kind = serving_state(conn).index_kind
    # search orders by the expression of the kind it was told is served: another index is never used
    kind_ok = status.kind == served_kind
    return dg.AssetCheckResult(
        passed=status.exists and status.valid and kind_ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"exists={status.exists} valid={status.valid} kind={status.kind} (search uses {served_kind}) drift="
        + (f"{status.drift_fraction:.1%}" if status.drift_fraction is not None else "unknown (no recorded build)"),
        metadata={"exists": status.exists, "valid": status.valid, "size_bytes": status.size_bytes,
                  "index_kind": str(status.kind), "served_index_kind": served_kind,
                  "rows_now": status.rows_now, "rows_at_last_build": status.rows_at_last_build or 0,
                  "drift_fraction": round(status.drift_fraction or 0.0, 4)},
    )


@dg.asset_check(
    asset="content_vectors",
    blocking=True,
    description="recall@10 of the HNSW index against exact search, on sampled queries. Under the target "
    "(min_recall) at the configured ef_search, the check first raises ef_search (doubling, up to "
    "max_ef_search) while p99 stays within latency_budget_ms, and serves the smallest setting that meets "
    "the target (recorded in meta.serving_settings; search reads it). Only if none does, it fails: as WARN "
    "above the hard floor (recall_floor), as a blocking ERROR under it.",
)
def content_vectors_recall_at_10(
    warehouse: WarehouseResource, vector_search: VectorSearchResource
) -> dg.AssetCheckResult:
    tuning = None
    n_queries = 0
    with warehouse.connection() as conn:
        status = index_status(conn)
        conn.commit()
        # measured on exactly this table and index before: the ground truth is a brute-force scan per
        # query, so a no-change rerun reuses that figure instead of paying for it again
        params = tuned_for(target=vector_search.min_recall, budget_ms=vector_search.latency_budget_ms,
                           max_ef=vector_search.max_ef_search, queries=vector_search.recall_queries)
        last = (still_valid(conn, configured=vector_search.ef_search, table_rows=status.rows_now,
                            built_at=status.last_built_at, params=params) if status.rows_now else None)
        if last is not None and last.recall is not None:
            return _reused_result(last, vector_search)
        if status.rows_now:
            queries = sample_queries(conn, n=vector_search.recall_queries, seed=CHECK_QUERY_SEED)
            n_queries = len(queries)
            tuning = tune_ef_search(
                conn, queries, k=K, configured=vector_search.ef_search, target=vector_search.min_recall,
                budget_ms=vector_search.latency_budget_ms, max_ef=vector_search.max_ef_search,
            )
            record(conn, tuning, table_rows=status.rows_now, built_at=status.last_built_at, params=params)
    point = tuning.chosen if tuning else None
    verdict = recall_verdict(
        point.recall if point else None,
        n_queries,
        min_recall=vector_search.min_recall,
        recall_floor=vector_search.recall_floor,
        min_queries=min(100, vector_search.recall_queries),
    )
    served = point.ef_search if point else vector_search.ef_search
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=_SEVERITY.get(verdict.level, dg.AssetCheckSeverity.ERROR),
        description=f"{verdict.reason} (recall@{K} at ef_search={served} over {n_queries} queries)"
        + (f"; {tuning.reason}" if tuning and (tuning.raised or not verdict.passed) else ""),
        metadata={
            "recall_at_10": dg.MetadataValue.float(round(point.recall, 4) if point else 0.0),
            "recall_target": dg.MetadataValue.float(vector_search.min_recall),
            "recall_floor": dg.MetadataValue.float(vector_search.recall_floor),
            "verdict": verdict.level,
            "queries": n_queries,
            "ef_search": served,
            "ef_search_configured": vector_search.ef_search,
            "ef_search_raised": bool(tuning and tuning.raised),
            "recall_at_configured": dg.MetadataValue.float(round(tuning.configured.recall, 4) if tuning else 0.0),
            "latency_budget_ms": dg.MetadataValue.float(vector_search.latency_budget_ms),
            "tuning": tuning.reason if tuning else "no vectors",
            "p50_ms": dg.MetadataValue.float(round(point.p50_ms, 3) if point else 0.0),
            "p99_ms": dg.MetadataValue.float(round(point.p99_ms, 3) if point else 0.0),
            "measured": True,
        },
    )


def _reused_result(last, vector_search: VectorSearchResource) -> dg.AssetCheckResult:
    verdict = recall_verdict(last.recall, vector_search.recall_queries, min_recall=vector_search.min_recall,
                             recall_floor=vector_search.recall_floor, min_queries=min(100, vector_search.recall_queries))
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=_SEVERITY.get(verdict.level, dg.AssetCheckSeverity.ERROR),
        description=f"{verdict.reason} (recall@{K} at ef_search={last.value}, measured at {last.chosen_at:%Y-%m-%d %H:%M} "
        "on this same table and index build: not measured again)",
        metadata={
            "recall_at_10": dg.MetadataValue.float(round(float(last.recall), 4)),
            "recall_target": dg.MetadataValue.float(vector_search.min_recall),
            "recall_floor": dg.MetadataValue.float(vector_search.recall_floor),
            "verdict": verdict.level,
            "ef_search": last.value,
            "ef_search_configured": last.configured,
            "ef_search_raised": last.value != last.configured,
            "tuning": last.reason,
            "p99_ms": dg.MetadataValue.float(round(float(last.p99_ms or 0.0), 3)),
            "measured": False,
            "measured_at": dg.MetadataValue.timestamp(last.chosen_at),
        },
    )
