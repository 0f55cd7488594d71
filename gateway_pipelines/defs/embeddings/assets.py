import time

import dagster as dg
import numpy as np

from gateway_pipelines import automation
from gateway_pipelines.lib.embeddings.hybrid import build_content_vectors, embedding_text
from gateway_pipelines.lib.embeddings.plan import plan_embeddings, read_catalog, stored_hashes
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.vector_store.loader import RowAccounting, copy_merge_embeddings
from gateway_pipelines.lib.vector_store.tables import (
    CONTENT_EMBEDDINGS_SCHEMA,
    CONTENT_EMBEDDINGS_TABLE,
    table_metadata,
)
from gateway_pipelines.lib.warehouse import WarehouseResource

EMBED_RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL)

REEMBED_CHECK = "content_embeddings_reembed_share"
# Re-embedding more than this share of the stored titles in one run is what a model or block-weight
# change looks like; without one, something upstream is rewriting the embedding inputs.
REEMBED_WARN_FRACTION = 0.5


def reembed_check(accounting: RowAccounting, model_id: str) -> dg.AssetCheckResult:
    share = accounting.updated / accounting.rows_before if accounting.rows_before else 0.0
    return dg.AssetCheckResult(
        check_name=REEMBED_CHECK,
        passed=share <= REEMBED_WARN_FRACTION,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{accounting.updated} of {accounting.rows_before} stored titles re-embedded ({share:.0%}; "
        f"warn above {REEMBED_WARN_FRACTION:.0%}), {accounting.inserted} new, with {model_id}",
        metadata={"rows_reembedded": accounting.updated, "rows_before": accounting.rows_before,
                  "reembed_fraction": dg.MetadataValue.float(round(share, 4)), "embedding_model": model_id},
    )


class EmbeddingsConfig(dg.Config):
    batch_size: int = 2048  # rows per provider batch (OpenAI takes at most 2,048 inputs a request)
    refit_local_model: bool = False  # refit TF-IDF/SVD on today's catalogue: a new version, a full re-embed


@dg.asset(
    group_name="embeddings",
    owners=["team:search"],
    automation_condition=automation.after_parents(),
    kinds={"python", "openai", "pgvector"},
    deps=["dim_content"],
    retry_policy=EMBED_RETRY,
    metadata=table_metadata(CONTENT_EMBEDDINGS_TABLE, CONTENT_EMBEDDINGS_SCHEMA),
    check_specs=[
        dg.AssetCheckSpec(
            REEMBED_CHECK,
            asset="content_embeddings",
            blocking=False,
            description="Share of the stored titles re-embedded in one run. WARN, not blocking: the vectors are "
            "still correct, but a mass re-embed costs provider calls and makes content_vectors rebuild its "
            "index; expected after switching the model or block weights, a question otherwise.",
        )
    ],
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
    accounting = RowAccounting(
        rows_in=plan.total,
        inserted=report.inserted,
        updated=report.updated,
        # rows the plan skipped, plus planned rows whose hash was stored meanwhile (the merge skips those)
        unchanged=plan.unchanged + report.unchanged,
        deleted=report.deleted,
        rows_before=report.rows_before,
        rows_after=report.rows_after,
    )
    if not accounting.adds_up:
        context.log.warning(f"content_embeddings counts do not add up: {'; '.join(accounting.problems())}")
    return dg.MaterializeResult(
        check_results=[reembed_check(accounting, provider.model_id)],
        metadata={
            "dagster/row_count": int(total),
            **accounting.as_metadata(),
            # provider work, which can exceed inserted + updated when another load stored a hash meanwhile
            "rows_embedded": len(plan.to_embed),
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
