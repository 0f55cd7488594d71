"""Index and search parameters, one place for the asset, its checks and the CLI."""

from __future__ import annotations

import dagster as dg


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
    bulk_fraction: float = 0.2  # more changed rows than this (share of the table) rebuilds the index
    recall_queries: int = 100
    min_recall: float = 0.95
    recall_floor: float = 0.90
    # where the recall plot PNG is also written (as content_vectors_recall.png); None: only in metadata
    artifacts_dir: str | None = None

    def index_config(self):
        from gateway_pipelines.lib.vector_store.index import IndexConfig

        return IndexConfig(
            m=self.m,
            ef_construction=self.ef_construction,
            maintenance_work_mem=self.maintenance_work_mem,
            parallel_workers=self.parallel_workers,
        )
