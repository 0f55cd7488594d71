"""Bulk rebuilds and model changes as a shadow build and swap: readers never wait, a failed build
resumes where it stopped, and the swap changes nothing but the table served."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest

from gateway_pipelines.lib.vector_store import copy_merge_embeddings, search_by_vector, sync_content_vectors
from gateway_pipelines.lib.vector_store.index import IndexConfig, build_hnsw, index_status
from gateway_pipelines.lib.warehouse import connect
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
)

N = 1000
K = 10
READER_LOCK_TIMEOUT = "200ms"  # far above a swap's catalog updates, far below an HNSW build of N rows


def catalogue(conn: psycopg.Connection, n: int = N) -> list[str]:
    keys = [f"movie-{i}" for i in range(1, n + 1)]
    create_dim_content(conn)
    insert_dim_content(conn, [dim_row(k) for k in keys])
    conn.commit()
    copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(n, clusters=25, seed=21)))
    return keys


def reader(url: str) -> psycopg.Connection:
    conn = connect(url, autocommit=True)
    # a search that has to wait for a lock longer than this fails instead: so 0 failures proves
    # no search waited for the build (an HNSW build holds its lock for the whole build)
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (READER_LOCK_TIMEOUT,))
    return conn


def test_searches_never_wait_for_a_rebuild(fresh_db):
    with connect(fresh_db) as conn:
        catalogue(conn)
        sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
    queries = clustered_vectors(40, clusters=25, seed=21)

    # the detector works: the old way (drop and rebuild the index on the served table in one
    # transaction) makes a search hit its lock timeout
    with connect(fresh_db) as builder, reader(fresh_db) as r:
        builder.execute("DROP INDEX vectors.content_vectors_vector_hnsw")  # held until rollback, as a build holds it
        with pytest.raises(psycopg.errors.LockNotAvailable):
            search_by_vector(r, queries[0], k=K, log=False)
        builder.rollback()

    done: list[tuple[float, float, int]] = []  # (start, end, rows) of each search, time.monotonic()
    failures: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        with reader(fresh_db) as r:
            i = 0
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    hits = search_by_vector(r, queries[i % len(queries)], k=K, log=False).hits
                except BaseException as exc:  # noqa: BLE001 - the assertion below reports it
                    failures.append(exc)
                    hits = []
                done.append((t0, time.monotonic(), len(hits)))
                i += 1
                time.sleep(0.002)  # a steady reader, not one that takes a core from the build

    thread = threading.Thread(target=search_loop)
    thread.start()
    try:
        with connect(fresh_db) as conn:
            report = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0), force_rebuild=True)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert report.rebuild_reason == "rebuild requested" and report.shadow is not None
    assert not failures, failures[:3]
    assert all(rows == K for _, _, rows in done)
    # searches kept completing while the shadow's HNSW index was being built: none queued behind it
    start, end = report.shadow.phases["index"]
    assert sum(1 for t0, t1, _ in done if start <= t0 and t1 <= end) >= 1, (report.shadow.phases, len(done))
    assert report.shadow.swap_attempts >= 1 and report.shadow.generation >= 2
    with connect(fresh_db) as conn:
        status = index_status(conn)
        assert status.valid and status.rows_now == N and status.rows_at_last_build == N
        # the retired table and the shadow are gone; the served table has its canonical index names
        names = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE nspname = 'vectors' AND relname LIKE 'content_vectors%'")}
        assert not any("shadow" in n or "retired" in n for n in names), names
        assert {"content_vectors", "content_vectors_pkey", "content_vectors_vector_hnsw",
                "content_vectors_genres_gin", "content_vectors_filter_idx"} <= names


def table_state(conn: psycopg.Connection) -> list[tuple]:
    rows = conn.execute("SELECT id, content_hash, embedding_model FROM vectors.content_vectors ORDER BY id").fetchall()
    conn.commit()
    return rows


def test_a_failed_shadow_build_resumes_where_it_stopped(fresh_db):
    with connect(fresh_db) as conn:
        keys = catalogue(conn, 800)
        sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
        before = table_state(conn)
        # new vectors for every title: a bulk change, built in a shadow of 8 buckets
        vs = clustered_vectors(len(keys), clusters=25, seed=22)
        copy_merge_embeddings(conn, embedding_rows(keys, vs))
        with pytest.raises(RuntimeError, match="stopped after 3 buckets"):
            sync_content_vectors(conn, index=IndexConfig(parallel_workers=0), buckets=8, fail_after_buckets=3)
        assert table_state(conn) == before  # the served table is untouched by the failed build
        state, done, loaded = conn.execute(
            "SELECT state, buckets_done, rows_loaded FROM meta.shadow_builds WHERE state = 'loading'").fetchone()
        conn.commit()
        assert state == "loading" and len(done) == 3 and 0 < loaded < len(keys)

        report = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0), buckets=8)
        assert report.shadow.resumed and report.shadow.buckets_loaded_now == 5  # only the buckets not done
        assert report.shadow.rows_loaded == len(keys)
        after = table_state(conn)
        expected = sorted((k, r[3], r[2]) for k, r in zip(keys, embedding_rows(keys, vs)))
        assert after == expected  # every title, each with its new vector
        assert report.accounting().adds_up, report.accounting().problems()
        states = conn.execute("SELECT state, resumed FROM meta.shadow_builds ORDER BY id").fetchall()
        conn.commit()
        assert states[-1] == ("swapped", 1)
        # and a rerun with nothing changed is incremental: nothing written, no build
        again = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
        assert (again.inserted, again.updated, again.deleted, again.shadow) == (0, 0, 0, None)


@pytest.mark.parametrize("kind", ["vector", "halfvec", "bit"])
def test_each_index_kind_serves_search_through_its_index(fresh_db, kind):
    with connect(fresh_db) as conn:
        catalogue(conn, 800)
        report = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0, kind=kind))
        assert report.shadow.index_kind == kind and index_status(conn).kind == kind
        conn.commit()
        queries = clustered_vectors(20, clusters=25, seed=21)
        vectors = np.stack([np.asarray(r[0].to_numpy()) for r in conn.execute(
            "SELECT vector FROM vectors.content_vectors ORDER BY id").fetchall()])
        ids = [r[0] for r in conn.execute("SELECT id FROM vectors.content_vectors ORDER BY id").fetchall()]
        conn.commit()
        recalls = []
        for q in queries:
            result = search_by_vector(conn, q, k=K, ef_search=100, log=False)
            assert result.index_kind == kind and result.strategy == "hnsw" and len(result.hits) == K
            truth = {ids[j] for j in np.argsort(-(vectors @ q))[:K]}
            recalls.append(len(truth & set(result.ids)) / K)
            distances = [h.distance for h in result.hits]
            assert distances == sorted(distances)  # re-ranked by the exact distance
            np.testing.assert_allclose(distances, 1 - vectors[[ids.index(h) for h in result.ids]] @ q, atol=1e-5)
        assert np.mean(recalls) >= (0.9 if kind == "bit" else 0.95), (kind, np.mean(recalls))
        # the ordered scan is the index, not a sequential scan of the table
        from gateway_pipelines.lib.vector_store.search import SearchFilters, _statement

        conn.execute("SET hnsw.ef_search = 100")
        conn.execute("SET enable_sort = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + _statement("hnsw", SearchFilters().where_text()[0], K, 100, kind, False),
            {"q": queries[0]}).fetchall())
        conn.rollback()
        assert "content_vectors_vector_hnsw" in plan, plan
        # and a rebuild of another kind replaces it through the same shadow build
        other = "vector" if kind != "vector" else "halfvec"
        assert sync_content_vectors(conn, index=IndexConfig(parallel_workers=0, kind=other)).rebuild_reason == (
            f"index kind {kind} → {other}")


def test_build_hnsw_still_rebuilds_in_place_for_other_callers(fresh_db):
    with connect(fresh_db) as conn:
        catalogue(conn, 300)
        sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
        build_hnsw(conn, config=IndexConfig(parallel_workers=0, kind="bit"))
        kind = conn.execute("SELECT index_kind FROM meta.vector_serving").fetchone()[0]
        conn.commit()
        assert kind == "bit" and index_status(conn).kind == "bit"  # search follows the index it has
        assert len(search_by_vector(conn, clustered_vectors(1, seed=2)[0], k=K, log=False).hits) == K
