"""The content vector store: bulk loading, HNSW index builds, filtered search and recall checks.

* :mod:`.loader` - binary COPY + merge into `vectors.content_embeddings`; sync of
  `vectors.content_vectors` from embeddings ⋈ `analytics.dim_content`, one embedding model at a time.
* :mod:`.shadow` - bulk rebuilds and model changes built beside the served table, resumably, and
  swapped in by one short transaction (readers never wait); what is served (`meta.vector_serving`).
* :mod:`.index` - HNSW builds of three kinds (vector, halfvec, bit), parallel workers verified from the
  server's messages, and index health.
* :mod:`.search` - k-NN search by vector, text or title, with filters that never return short, and
  never across embedding models.
* :mod:`.pool` - search connections configured once (prepared statements, session settings) and
  batched, asynchronous search logging.
* :mod:`.recall` - recall@k / latency per ef_search against exact search, the recall verdict, the plot.
* :mod:`.history` - one recall measurement per build in `meta.recall_measurements`.
* :mod:`.tables` - the served tables' names and column schemas (Dagster asset metadata).
"""

from .history import (
    RecallMeasurement,
    measure_serving_recall,
    recent_measurements,
    record_measurement,
)
from .index import IndexBuild, IndexConfig, IndexStatus, build_hnsw, index_status
from .loader import (
    MergeReport,
    RowAccounting,
    SyncReport,
    copy_merge_embeddings,
    raw_binary_copy,
    sync_content_vectors,
)
from .pool import SearchLogWriter, SearchPool
from .recall import (
    RecallPoint,
    RecallVerdict,
    ef_search_sweep,
    measure_recall,
    recall_plot_png,
    recall_verdict,
    sample_queries,
)
from .search import (
    ModelMismatchError,
    SearchFilters,
    SearchHit,
    SearchResult,
    search_by_text,
    search_by_vector,
    served_model,
    similar,
)
from .shadow import ServingState, ShadowBuild, serving_state

__all__ = [
    "IndexBuild",
    "IndexConfig",
    "IndexStatus",
    "MergeReport",
    "ModelMismatchError",
    "RecallMeasurement",
    "RecallPoint",
    "RecallVerdict",
    "RowAccounting",
    "SearchFilters",
    "SearchLogWriter",
    "SearchPool",
    "SearchHit",
    "SearchResult",
    "ServingState",
    "ShadowBuild",
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
    "served_model",
    "serving_state",
    "similar",
    "sync_content_vectors",
]
