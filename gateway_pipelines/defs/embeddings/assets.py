import time

import dagster as dg

from gateway_pipelines import automation
from gateway_pipelines.lib.embeddings.coverage import Freshness
from gateway_pipelines.lib.embeddings.hybrid import build_content_vectors
from gateway_pipelines.lib.embeddings.plan import CatalogPlan, catalogue_size, fit_corpus, sample_texts
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.vector_store.loader import RowAccounting, load_resumably
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


COVERAGE_CHECK = "content_embeddings_vocabulary_coverage"


def coverage_check(freshness: Freshness | None, model_id: str, refit_reason: str | None) -> dg.AssetCheckResult:
    """WARN when the local model no longer knows the catalogue it embeds (after any automatic refit)."""
    if freshness is None:
        return dg.AssetCheckResult(
            check_name=COVERAGE_CHECK, passed=True, severity=dg.AssetCheckSeverity.WARN,
            description=f"{model_id}: not a fitted local model, so its vocabulary cannot go stale",
            metadata={"embedding_model": model_id},
        )
    refit = f" Refitted this run ({refit_reason})." if refit_reason else ""
    fix = "" if not freshness.stale else (
        " Refit with `refit_local_model: true`" + ("" if freshness.refit_due else
                                                   " (not automatic: the model was fitted on this catalogue)"))
    return dg.AssetCheckResult(
        check_name=COVERAGE_CHECK,
        passed=not freshness.stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{model_id}: {freshness.describe()}.{refit}{fix}",
        metadata={**freshness.as_metadata(), "embedding_model": model_id,
                  "min_coverage": freshness.min_coverage, "max_growth": freshness.max_growth},
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
        ),
        dg.AssetCheckSpec(
            COVERAGE_CHECK,
            asset="content_embeddings",
            blocking=False,
            description="Share of the catalogue's token mass the local TF-IDF/SVD model knows, and the "
            "catalogue's growth since the fit. Below the coverage threshold or past the growth factor the "
            "model is refitted automatically (a new version, every title re-embedded); WARN when the served "
            "model is still stale, so the UI says its plot vectors miss words of the catalogue.",
        ),
    ],
    description="Hybrid 768-d vectors (plot 512 + genre 64 + mood 64 + metadata 128) for every title of "
    "dim_content, in vectors.content_embeddings. The catalogue streams in batches; only rows whose embedding "
    "hash changed are embedded, and titles SQL proves unchanged are not even read. The local model is "
    "refitted when its vocabulary no longer covers the catalogue.",
)
def content_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingsConfig,
    warehouse: WarehouseResource,
    embeddings: EmbeddingResource,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    weights = embeddings.weights()
    stage: dict[str, float] = {"plan_s": 0.0, "embed_s": 0.0}
    refit_reason = "requested (refit_local_model)" if config.refit_local_model else None
    freshness: Freshness | None = None
    with warehouse.connection() as read, warehouse.connection() as memo:
        titles = catalogue_size(read)

        def corpus():
            return fit_corpus(read, embeddings.fit_max_docs)

        t0 = time.perf_counter()
        provider = embeddings.open(corpus, refit=config.refit_local_model, catalogue_titles=titles)
        if provider.kind == "local" and titles:
            sample = sample_texts(read, embeddings.coverage_sample)
            freshness = provider.freshness(sample, catalogue_titles=titles, min_coverage=embeddings.min_coverage,
                              max_growth=embeddings.max_growth)
            if freshness.refit_due and embeddings.auto_refit and not config.refit_local_model:
                refit_reason = "; ".join(freshness.reasons)
                context.log.warning(f"{provider.model_id} is stale ({refit_reason}): refitting on the catalogue")
                provider = embeddings.open(corpus, refit=True, catalogue_titles=titles)
                freshness = provider.freshness(sample, catalogue_titles=titles, min_coverage=embeddings.min_coverage,
                                               max_growth=embeddings.max_growth)
        stage["model_s"] = time.perf_counter() - t0
        read.commit()

        with CatalogPlan(read, memo, provider.model_id, weights) as plan:
            counts = plan.counts
            context.log.info(
                f"{provider.model_id}: {counts.catalogue} titles, {counts.memo_unchanged} unchanged by their input "
                f"digest, the rest hashed while streaming; {len(counts.to_delete)} to delete"
            )

            def vectors():
                batches = plan.batches(config.batch_size)
                while True:
                    t = time.perf_counter()
                    batch = next(batches, None)
                    stage["plan_s"] += time.perf_counter() - t
                    if batch is None:
                        return
                    t = time.perf_counter()
                    matrix = build_content_vectors([row for row, _ in batch], provider, weights)
                    stage["embed_s"] += time.perf_counter() - t
                    for (row, digest), vector in zip(batch, matrix):
                        yield row["content_key"], vector, provider.model_id, digest

            with warehouse.connection() as load:
                report = load_resumably(load, vectors(), delete_missing_keys=counts.to_delete)
                total = load.execute("SELECT count(*) FROM vectors.content_embeddings").fetchone()[0]
        if counts.to_delete:
            plan.prune_memo()
    seconds = time.perf_counter() - started
    accounting = RowAccounting(
        rows_in=counts.total,
        inserted=report.inserted,
        updated=report.updated,
        # rows the plan skipped, plus planned rows whose hash was stored meanwhile (the merge skips those)
        unchanged=counts.unchanged + report.unchanged,
        deleted=report.deleted,
        rows_before=report.rows_before,
        rows_after=report.rows_after,
    )
    if not accounting.adds_up:
        context.log.warning(f"content_embeddings counts do not add up: {'; '.join(accounting.problems())}")
    load_s = max(report.seconds - stage["plan_s"] - stage["embed_s"], 0.0)
    model_meta = dict(getattr(provider, "meta", {}) or {})
    corpus_meta = model_meta.get("corpus") or {}
    return dg.MaterializeResult(
        check_results=[reembed_check(accounting, provider.model_id),
                       coverage_check(freshness, provider.model_id, refit_reason)],
        metadata={
            "dagster/row_count": int(total),
            **accounting.as_metadata(),
            # provider work, which can exceed inserted + updated when another load stored a hash meanwhile
            "rows_embedded": counts.to_embed,
            "rows_hashed": counts.hashed,
            "rows_unchanged_by_digest": counts.memo_unchanged,
            "provider_calls": provider.calls,
            "provider": provider.kind,
            "embedding_model": provider.model_id,
            "block_weights": dg.MetadataValue.json(weights.as_dict()),
            **(freshness.as_metadata() if freshness else {}),
            "model_refitted": refit_reason is not None and provider.kind == "local",
            **({"model_refit_reason": refit_reason} if refit_reason else {}),
            **({"model_fitted_at": model_meta.get("fitted_at"), "model_vocabulary": corpus_meta.get("vocabulary"),
                "model_fit_docs": model_meta.get("n_docs"), "model_fit_token_mass": corpus_meta.get("token_mass")}
               if provider.kind == "local" else {}),
            "model_seconds": round(stage["model_s"], 3),
            "plan_seconds": round(stage["plan_s"], 3),
            "embed_seconds": round(stage["embed_s"], 3),
            "load_seconds": round(load_s, 3),
            "duration_s": round(seconds, 3),
            "vectors_per_second": round(counts.to_embed / stage["embed_s"], 1) if stage["embed_s"] else 0.0,
            "titles_per_second_end_to_end": round(counts.to_embed / seconds, 1) if counts.to_embed else 0.0,
        }
    )
