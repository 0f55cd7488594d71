"""The content vector store: bulk loading, HNSW index builds, filtered search and recall checks.

* :mod:`.loader` - binary COPY + merge into `vectors.content_embeddings`; sync of
  `vectors.content_vectors` from embeddings ⋈ `analytics.dim_content` (bulk mode rebuilds the index).
* :mod:`.index` - HNSW builds (parallel workers verified from the server's messages) and index health.
* :mod:`.search` - k-NN search by vector, text or title, with filters that never return short.
* :mod:`.recall` - recall@k / latency per ef_search against exact search, the recall verdict, the plot.
* :mod:`.history` - one recall measurement per build in `meta.recall_measurements`.
* :mod:`.tables` - the served tables' names and column schemas (Dagster asset metadata).
"""

from .history import RecallMeasurement, measure_serving_recall, recent_measurements, record_measurement
from .index import IndexBuild, IndexConfig, IndexStatus, build_hnsw, index_status
from .loader import (
    MergeReport,
    RowAccounting,
    SyncReport,
    copy_merge_embeddings,
    raw_binary_copy,
    sync_content_vectors,
)
from .recall import (
    RecallPoint,
    RecallVerdict,
    ef_search_sweep,
    measure_recall,
    recall_plot_png,
    recall_verdict,
    sample_queries,
)
from .search import SearchFilters, SearchHit, SearchResult, search_by_text, search_by_vector, similar

__all__ = [
    "IndexBuild",
    "IndexConfig",
    "IndexStatus",
    "MergeReport",
    "RecallMeasurement",
    "RecallPoint",
    "RecallVerdict",
    "RowAccounting",
    "SearchFilters",
    "SearchHit",
    "SearchResult",
    "SyncReport",
    "build_hnsw",
    "copy_merge_embeddings",
    "ef_search_sweep",
    "index_status",
    "measure_recall",
    "measure_serving_recall",
    "raw_binary_copy",
    "recall_plot_png",
    "recall_verdict",
    "recent_measurements",
    "record_measurement",
    "sample_queries",
    "search_by_text",
    "search_by_vector",
    "similar",
    "sync_content_vectors",
]
