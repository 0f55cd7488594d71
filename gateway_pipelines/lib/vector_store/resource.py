"""Index and search parameters, one place for the asset, its checks and the CLI."""

from __future__ import annotations

import dagster as dg

from gateway_pipelines.lib.vector_store.index import DEFAULT_KIND


class VectorSearchResource(dg.ConfigurableResource):
    """HNSW build parameters (m, ef_construction), the serving `ef_search`, and the recall gates.

    Two recall thresholds, at the serving ef_search: under ``min_recall`` (the target) the recall
    check fails as a WARN, which is shown but lets search be served; under ``recall_floor`` it fails
    as a blocking ERROR.
    """

    m: int = 16
    ef_construction: int = 64
    ef_search: int = 100
    maintenance_work_mem: str = "1GB"
    parallel_workers: int = 2
    # what the HNSW index is built on: 'halfvec' (default), 'vector' or 'bit' (GATEWAY_VECTOR_INDEX;
    # docs/vector_store.md has the measurements). A change is applied by a shadow build and swap.
    index_kind: str = DEFAULT_KIND
    shadow_buckets: int = 16  # a shadow build commits this many hash buckets; a failed run resumes from the next
    bulk_fraction: float = 0.2  # more changed rows than this (share of the table) rebuilds the index
    recall_queries: int = 100
    min_recall: float = 0.95
    recall_floor: float = 0.90
    # Under min_recall, the recall check may raise ef_search up to max_ef_search while p99 stays
    # within the budget (see lib/vector_store/tuning.py); max_ef_search = ef_search switches that off.
    max_ef_search: int = 800
    latency_budget_ms: float = 20.0
    # where the recall plot PNG is also written (as content_vectors_recall.png); None: only in metadata
    artifacts_dir: str | None = None

    def serving_ef_search(self, conn) -> int:
        """The ef_search to serve with: the recall check's raised setting, else the configured one."""
        from gateway_pipelines.lib.vector_store.tuning import serving_ef_search

        return serving_ef_search(conn, self.ef_search)

    def index_config(self):
        from gateway_pipelines.lib.vector_store.index import IndexConfig

        return IndexConfig(
            m=self.m,
            ef_construction=self.ef_construction,
            maintenance_work_mem=self.maintenance_work_mem,
            parallel_workers=self.parallel_workers,
            kind=self.index_kind,
        )
