"""Under its recall target, the check raises ef_search within the latency budget instead of failing a run
whose data is fine; search then serves the raised setting. With no setting inside the budget, it fails."""

from __future__ import annotations

import dagster as dg

from gateway_pipelines.defs.vector_store.assets import content_vectors
from gateway_pipelines.defs.vector_store.checks import CHECK_QUERY_SEED, K, content_vectors_recall_at_10
from gateway_pipelines.lib.vector_store import copy_merge_embeddings, measure_recall, sample_queries
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.vector_store.tuning import ef_ladder
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
)

N = 3000
LOW_EF = 10  # the least ef_search that can return k=10 rows: dense clusters lose neighbours at it


def _evaluate(url: str, vector_search: VectorSearchResource) -> tuple[dg.AssetCheckEvaluation, bool]:
    result = dg.materialize(
        [content_vectors, content_vectors_recall_at_10],
        resources={"warehouse": WarehouseResource(database_url=url), "vector_search": vector_search},
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation, result.success


def test_ef_search_is_raised_within_budget_recorded_and_served(fresh_db):
    keys = [f"movie-{i}" for i in range(1, N + 1)]
    with connect(fresh_db) as conn:
        create_dim_content(conn)
        insert_dim_content(conn, [dim_row(k) for k in keys])
        conn.commit()
        copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(N, clusters=8, seed=5)))

    # a budget no machine misses: the test is about the ladder and what is served, not about speed
    tight = VectorSearchResource(ef_search=LOW_EF, min_recall=0.999, recall_floor=0.5, latency_budget_ms=10_000)
    evaluation, success = _evaluate(fresh_db, tight)
    with connect(fresh_db) as conn:
        queries = sample_queries(conn, n=tight.recall_queries, seed=CHECK_QUERY_SEED)
        [at_low] = measure_recall(conn, queries, k=K, ef_search_values=(LOW_EF,))
        value, configured, reason = conn.execute(
            "SELECT value, configured, reason FROM meta.serving_settings WHERE setting = 'hnsw.ef_search'"
        ).fetchone()
        served = tight.serving_ef_search(conn)
    assert at_low.recall < tight.min_recall, at_low.recall  # the premise: the configured setting misses
    assert evaluation.passed and success, evaluation.description
    meta = evaluation.metadata
    assert meta["ef_search_raised"].value is True
    assert meta["ef_search"].value > LOW_EF and meta["recall_at_10"].value >= tight.min_recall
    assert meta["p99_ms"].value <= tight.latency_budget_ms
    assert "raised ef_search 10→" in evaluation.description
    assert (value, configured) == (meta["ef_search"].value, LOW_EF) and "raised" in reason
    assert served == value  # what `gateway search` uses
    assert VectorSearchResource(ef_search=200).serving_ef_search(connect(fresh_db)) == 200  # a new intent wins

    no_budget = VectorSearchResource(ef_search=LOW_EF, min_recall=0.999, recall_floor=0.5, latency_budget_ms=1e-6)
    evaluation, success = _evaluate(fresh_db, no_budget)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "no ef_search up to the limit meets recall 0.999 within p99" in evaluation.description
    assert evaluation.metadata["ef_search"].value == LOW_EF  # nothing raised: search keeps the configured one
    assert success  # a WARN: shown, the run goes on


def test_the_ladder_doubles_and_ends_at_the_limit():
    assert ef_ladder(100, 800) == [200, 400, 800]
    assert ef_ladder(100, 500) == [200, 400, 500]
    assert ef_ladder(100, 100) == []
