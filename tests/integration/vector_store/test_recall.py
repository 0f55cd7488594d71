"""The recall check: a good HNSW index passes it and a deliberately bad one fails it."""

from __future__ import annotations

import numpy as np

from gateway_pipelines.lib.vector_store import (
    IndexConfig,
    build_hnsw,
    copy_merge_embeddings,
    measure_recall,
    recall_plot_png,
    sample_queries,
    sync_content_vectors,
)
from gateway_pipelines.lib.vector_store.recall import RecallPoint, exact_neighbours
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
)

N = 3000


def test_recall_passes_on_a_good_index_and_fails_on_a_bad_one(conn):
    keys = [f"movie-{i}" for i in range(1, N + 1)]
    create_dim_content(conn)
    insert_dim_content(conn, [dim_row(k) for k in keys])
    conn.commit()
    copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(N, clusters=40, seed=31)))
    sync_content_vectors(conn)  # bulk: builds the default index (m=16, ef_construction=64)

    queries = sample_queries(conn, n=60, seed=3)
    assert queries.shape == (60, 768)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    truth = exact_neighbours(conn, queries, k=10)
    nearest = conn.execute(
        "SELECT min(vector <=> %s) FROM vectors.content_vectors", (queries[0],)
    ).fetchone()[0]
    conn.commit()
    assert 0 < nearest < 0.05  # near a stored title, but not a copy of it

    good = measure_recall(conn, queries, k=10, ef_search_values=(40, 100), exact_ids=truth)
    assert [p.ef_search for p in good] == [40, 100]
    at_100 = good[1]
    assert at_100.recall >= 0.95, good
    assert at_100.min_rows == 10 and at_100.queries == 60 and at_100.qps > 0
    assert 0 < at_100.p50_ms <= at_100.p99_ms

    build_hnsw(conn, config=IndexConfig(m=2, ef_construction=4))
    bad = measure_recall(conn, queries, k=10, ef_search_values=(100,), exact_ids=truth)
    assert bad[0].recall < 0.95, bad  # the same check, the same queries: a bad graph is caught


def test_recall_plot_is_a_png():
    points = [RecallPoint(20, 0.9, 0.3, 0.8, 3000.0), RecallPoint(100, 0.99, 0.6, 1.1, 1600.0)]
    png = recall_plot_png(points)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_exact_neighbours_match_a_brute_force_scan_per_query(conn):
    """The one-pass ground truth (blocks merged into a running top-k) against the database's own
    exact ORDER BY per query, unfiltered and filtered, with blocks small enough to need many merges."""
    from gateway_pipelines.lib.vector_store.search import SearchFilters, exact_query

    n = 1500
    keys = [f"movie-{i}" for i in range(1, n + 1)]
    create_dim_content(conn)
    insert_dim_content(conn, [dim_row(k, genre_ids=[18] if i % 3 == 0 else [35]) for i, k in enumerate(keys)])
    conn.commit()
    copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(n, clusters=20, seed=5)))
    sync_content_vectors(conn)
    queries = sample_queries(conn, n=25, seed=9)
    for filters in (SearchFilters(), SearchFilters(genre_ids=(18,))):
        where, named = filters.where()
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            brute = [[r[0] for r in conn.execute(exact_query(where, 10), {"q": q, **named}).fetchall()]
                     for q in queries]
        got = exact_neighbours(conn, queries, k=10, filters=filters, chunk_rows=97)
        assert got == brute, filters
    assert len(set(got[0]) & {k for i, k in enumerate(keys) if i % 3 == 0}) == 10  # the filter applied
