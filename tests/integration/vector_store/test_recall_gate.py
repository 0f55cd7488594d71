"""The recall check's two tiers on a deliberately poor index: WARN shows and lets downstream run,
ERROR under the hard floor blocks it; a good index passes. And the re-embed WARN of content_embeddings."""

from __future__ import annotations

import dagster as dg
import pytest

from gateway_pipelines.defs.embeddings.assets import REEMBED_WARN_FRACTION, reembed_check
from gateway_pipelines.defs.vector_store.assets import content_vectors
from gateway_pipelines.defs.vector_store.checks import CHECK_QUERY_SEED, K, content_vectors_recall_at_10
from gateway_pipelines.lib.vector_store import (
    RowAccounting,
    copy_merge_embeddings,
    measure_recall,
    recall_verdict,
    sample_queries,
)
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
)

N = 3000
POOR = {"m": 4, "ef_construction": 8}  # a graph this sparse misses many true neighbours at any ef_search


@dg.asset(deps=[content_vectors])
def search_consumer() -> None:
    """Stands for whatever serves search from content_vectors."""


def run(url: str, vector_search: VectorSearchResource, *, force: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [content_vectors, content_vectors_recall_at_10, search_consumer],
        resources={"warehouse": WarehouseResource(database_url=url), "vector_search": vector_search},
        run_config={"ops": {"content_vectors": {"config": {"force_index_rebuild": force}}}},
        raise_on_error=False,
    )


def outcome(result: dg.ExecuteInProcessResult) -> tuple[dg.AssetCheckEvaluation, set[str]]:
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation, {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def serving_recall(url: str, vector_search: VectorSearchResource) -> float:
    """What the check will measure: the same query sample, the same index, the same ef_search."""
    with connect(url) as conn:
        queries = sample_queries(conn, n=vector_search.recall_queries, seed=CHECK_QUERY_SEED)
        [point] = measure_recall(conn, queries, k=K, ef_search_values=(vector_search.ef_search,))
    return point.recall


def test_a_poor_index_warns_above_the_floor_and_blocks_below_it(fresh_db):
    keys = [f"movie-{i}" for i in range(1, N + 1)]
    with connect(fresh_db) as conn:
        create_dim_content(conn)
        insert_dim_content(conn, [dim_row(k) for k in keys])
        conn.commit()
        copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(N, clusters=40, seed=31)))

    # target 0.95, floor 0.90; ef_search is not raised here (test_recall_tuning covers that)
    strict = VectorSearchResource(**POOR, max_ef_search=100)
    blocked = run(fresh_db, strict)  # builds the poor index (first sync is bulk)
    evaluation, materialised = outcome(blocked)
    recall = serving_recall(fresh_db, strict)
    assert recall < strict.recall_floor, recall  # the premise: this graph is really that poor
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["recall_at_10"].value == pytest.approx(recall, abs=1e-4)
    assert evaluation.metadata["verdict"].value == "error"
    assert not blocked.success and materialised == {"content_vectors"}  # search_consumer was held back

    lenient = VectorSearchResource(**POOR, max_ef_search=100, recall_floor=round(recall / 2, 3))  # floor below it
    warned = run(fresh_db, lenient)
    evaluation, materialised = outcome(warned)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["recall_at_10"].value == pytest.approx(recall, abs=1e-4)
    assert "under the target" in evaluation.description
    warned_measured = evaluation.metadata["measured"].value
    assert warned.success and materialised == {"content_vectors", "search_consumer"}

    good = run(fresh_db, VectorSearchResource(), force=True)  # rebuilt with m=16, ef_construction=64
    evaluation, materialised = outcome(good)
    assert evaluation.passed and evaluation.metadata["recall_at_10"].value >= 0.95
    assert good.success and materialised == {"content_vectors", "search_consumer"}

    with connect(fresh_db) as conn:
        history = conn.execute(
            "SELECT m, ef_construction, index_rebuilt, recall FROM meta.recall_measurements ORDER BY id"
        ).fetchall()
    # the lenient run changed no row and no index: its verdict is the same figure judged against the
    # new floor, not a second measurement of the same graph
    assert [h[:3] for h in history] == [(4, 8, True), (16, 64, True)]
    assert warned_measured is False
    assert history[0][3] < strict.recall_floor < history[1][3]  # the history shows the fix


@pytest.mark.parametrize(
    ("recall", "queries", "level"),
    [(0.99, 100, "pass"), (0.95, 100, "pass"), (0.93, 100, "warn"), (0.90, 100, "warn"), (0.899, 100, "error"),
     (None, 0, "error"), (0.99, 10, "error")],
)
def test_recall_verdict_tiers(recall, queries, level):
    assert recall_verdict(recall, queries, min_recall=0.95, recall_floor=0.90, min_queries=100).level == level


def test_a_floor_above_the_target_is_refused():
    with pytest.raises(ValueError, match="recall_floor"):
        recall_verdict(0.99, 100, min_recall=0.9, recall_floor=0.95)


def _accounting(updated: int, before: int, inserted: int = 0) -> RowAccounting:
    unchanged = before - updated
    return RowAccounting(rows_in=inserted + before, inserted=inserted, updated=updated, unchanged=unchanged,
                         deleted=0, rows_before=before, rows_after=before + inserted)


def test_mass_re_embedding_is_a_warning_and_a_first_load_is_not():
    first_load = reembed_check(_accounting(updated=0, before=0, inserted=300), "local:lsa@1")
    routine = reembed_check(_accounting(updated=12, before=300), "local:lsa@1")
    at_limit = reembed_check(_accounting(updated=int(300 * REEMBED_WARN_FRACTION), before=300), "local:lsa@1")
    mass = reembed_check(_accounting(updated=280, before=300, inserted=5), "local:lsa@2")
    assert first_load.passed and routine.passed and at_limit.passed
    assert not mass.passed and mass.severity == dg.AssetCheckSeverity.WARN
    assert mass.metadata["reembed_fraction"].value == pytest.approx(280 / 300, abs=1e-4)
    assert "280 of 300" in mass.description


def test_recall_is_measured_on_the_index_inside_an_open_transaction(conn):
    """Exact search turns index scans off with SET LOCAL, which outlives a savepoint: measured inside
    a caller's transaction, the index queries must still use the index (and so show a poor graph)."""
    from gateway_pipelines.lib.vector_store import sync_content_vectors
    from gateway_pipelines.lib.vector_store.index import IndexConfig

    keys = [f"movie-{i}" for i in range(1, 1501)]
    create_dim_content(conn)
    insert_dim_content(conn, [dim_row(k) for k in keys])
    conn.commit()
    copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(1500, clusters=20, seed=8)))
    sync_content_vectors(conn, index=IndexConfig(**POOR))
    queries = sample_queries(conn, n=50, seed=2)

    [idle] = measure_recall(conn, queries, k=K, ef_search_values=(100,))
    conn.execute("SELECT 1")  # the caller's transaction is now open: the measurement runs in savepoints
    [inside] = measure_recall(conn, queries, k=K, ef_search_values=(100,))
    assert conn.execute("SELECT current_setting('enable_indexscan')").fetchone()[0] == "on"
    conn.rollback()
    assert idle.recall < 0.95  # the premise: a graph this sparse loses neighbours
    assert inside.recall == idle.recall
