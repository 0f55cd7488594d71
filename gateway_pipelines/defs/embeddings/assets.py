import time

import dagster as dg
import numpy as np

from gateway_pipelines.lib.embeddings.hybrid import build_content_vectors, embedding_text
from gateway_pipelines.lib.embeddings.plan import plan_embeddings, read_catalog, stored_hashes
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.vector_store.loader import copy_merge_embeddings
from gateway_pipelines.lib.warehouse import WarehouseResource

EMBED_RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL)


class EmbeddingsConfig(dg.Config):
    batch_size: int = 2048  # rows per provider batch (OpenAI takes at most 2,048 inputs a request)
    refit_local_model: bool = False  # refit TF-IDF/SVD on today's catalogue: a new version, a full re-embed


@dg.asset(
    group_name="embeddings",
    kinds={"python", "openai", "pgvector"},
    deps=["dim_content"],
    retry_policy=EMBED_RETRY,
    description="Hybrid 768-d vectors (plot 512 + genre 64 + mood 64 + metadata 128) for every title of "
    "dim_content, in vectors.content_embeddings. Only rows whose embedding hash changed are embedded.",
)
def content_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingsConfig,
    warehouse: WarehouseResource,
    embeddings: EmbeddingResource,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    with warehouse.connection() as conn:
        rows = read_catalog(conn)
        stored = stored_hashes(conn)
    provider = embeddings.open(lambda: (embedding_text(r) for r in rows), refit=config.refit_local_model)
    weights = embeddings.weights()
    plan = plan_embeddings(rows, stored, provider.model_id, weights)
    context.log.info(
        f"{provider.model_id}: {len(plan.to_embed)} to embed, {plan.unchanged} unchanged, "
        f"{len(plan.to_delete)} to delete"
    )

    embed_seconds = 0.0

    def vectors():
        nonlocal embed_seconds
        for start in range(0, len(plan.to_embed), config.batch_size):
            batch = plan.to_embed[start : start + config.batch_size]
            t0 = time.perf_counter()
            matrix = build_content_vectors([row for row, _ in batch], provider, weights)
            embed_seconds += time.perf_counter() - t0
            for (row, digest), vector in zip(batch, matrix):
                yield row["content_key"], np.asarray(vector, dtype=np.float32), provider.model_id, digest

    with warehouse.connection() as conn:
        report = copy_merge_embeddings(conn, vectors(), delete_missing_keys=plan.to_delete)
        total = conn.execute("SELECT count(*) FROM vectors.content_embeddings").fetchone()[0]
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(total),
            "rows_in": plan.total,
            "rows_embedded": len(plan.to_embed),
            "rows_unchanged": plan.unchanged,
            "rows_deleted": report.deleted,
            "provider_calls": provider.calls,
            "provider": provider.kind,
            "embedding_model": provider.model_id,
            "block_weights": dg.MetadataValue.json(weights.as_dict()),
            "embed_seconds": round(embed_seconds, 3),
            "load_seconds": round(report.seconds, 3),
            "duration_s": round(seconds, 3),
            "vectors_per_second": round(len(plan.to_embed) / embed_seconds, 1) if embed_seconds else 0.0,
        }
    )
