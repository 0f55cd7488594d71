"""Hot genres get a partial HNSW index with the table's shadow build; a filter on one of them scans
that graph (the planner's choice, shown by EXPLAIN), through plain and pooled connections, and
returns the same titles as the exact scan."""

from __future__ import annotations

import numpy as np

from gateway_pipelines.lib.vector_store import (
    IndexConfig,
    SearchFilters,
    copy_merge_embeddings,
    search_by_vector,
    sync_content_vectors,
)
from gateway_pipelines.lib.vector_store.pool import SearchPool
from gateway_pipelines.lib.vector_store.search import _partial_where, _statement
from gateway_pipelines.lib.vector_store.shadow import hot_genres, serving_state
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
)

N = 3000
HOT, RARE, COMMON = 99, 10770, 18  # 30%, 1% and 70% of the titles


def _catalogue(conn) -> tuple[list[str], np.ndarray, dict[str, list[int]]]:
    keys = [f"movie-{i}" for i in range(1, N + 1)]
    genres = {k: ([HOT] if i % 10 < 3 else [COMMON]) + ([RARE] if i % 100 == 0 else []) for i, k in enumerate(keys)}
    create_dim_content(conn)
    insert_dim_content(conn, [dim_row(k, genre_ids=genres[k]) for k in keys])
    conn.commit()
    x = clustered_vectors(N, clusters=30, seed=11)
    copy_merge_embeddings(conn, embedding_rows(keys, x))
    return keys, x, genres


def _exact(keys, x, genres, q, genre, k=10):
    allowed = np.array([genre in genres[key] for key in keys])
    sims = x @ q / np.linalg.norm(q)
    sims[~allowed] = -np.inf
    return [keys[i] for i in np.argsort(-sims)[:k]]


def test_a_hot_genre_is_searched_on_its_own_partial_index(conn, fresh_db):
    keys, x, genres = _catalogue(conn)
    # at 3,000 titles the exact scan serves up to 346 matching titles; the hot genre has 900, the rare 30,
    # the common one 2,100: only the hot one is between the exact threshold and the share allowed
    config = IndexConfig(partial_max_share=0.5)
    report = sync_content_vectors(conn, index=config)
    assert report.shadow is not None and report.shadow.partial_genres == [HOT]
    assert serving_state(conn).table == "vectors.content_vectors"
    assert conn.execute("SELECT partial_genres FROM meta.vector_serving").fetchone()[0] == [HOT]
    assert hot_genres(conn, "vectors.content_vectors", max_share=0.5, max_indexes=8) == [HOT]
    assert hot_genres(conn, "vectors.content_vectors", max_share=0.2, max_indexes=8) == []
    indexes = {r[0]: r[1] for r in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'content_vectors' AND indexdef LIKE '%hnsw%'")}
    conn.commit()
    assert f"content_vectors_g{HOT}_hnsw" in indexes and "WHERE (genre_ids &&" in indexes[f"content_vectors_g{HOT}_hnsw"]

    queries = clustered_vectors(N + 8, clusters=30, seed=11)[N:]
    where = _partial_where(" WHERE genre_ids && %(f_genre_ids)s::integer[]", HOT)
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN " + _statement("hnsw", where, 10, 20, "halfvec", True), {"q": queries[0]}).fetchall())
    conn.commit()
    assert f"content_vectors_g{HOT}_hnsw" in plan  # the planner takes the genre's own graph

    f = SearchFilters(genre_ids=(HOT,))
    found = 0
    with SearchPool(fresh_db, min_size=1, max_size=1, log=False) as pool:
        for q in queries:
            truth = _exact(keys, x, genres, q, HOT)
            plain = search_by_vector(conn, q, k=10, filters=f, log=False)
            pooled = pool.search(q, k=10, filters=f)
            assert plain.strategy == pooled.strategy == "hnsw_iterative"
            assert all(HOT in genres[h.id] for h in plain.hits + pooled.hits) and len(pooled.hits) == 10
            assert plain.ids == pooled.ids
            found += len(set(plain.ids) & set(truth))
    assert found / (10 * len(queries)) >= 0.9
    # a genre with no partial index and few titles is answered exactly, by the planner's estimate
    rare = search_by_vector(conn, queries[0], k=10, filters=SearchFilters(genre_ids=(RARE,)), log=False)
    assert rare.strategy == "exact" and rare.ids == _exact(keys, x, genres, queries[0], RARE)


def test_no_partial_index_when_turned_off(conn):
    _catalogue(conn)
    report = sync_content_vectors(conn, index=IndexConfig(partial_max_share=0.5, partial_max_indexes=0))
    assert report.shadow.partial_genres == []
    assert conn.execute("SELECT partial_genres FROM meta.vector_serving").fetchone()[0] == []
    conn.commit()
