"""sync_content_vectors: content_embeddings ⋈ dim_content → content_vectors, in one transaction."""

from __future__ import annotations

import psycopg
import pytest

from gateway_pipelines.lib.vector_store import (
    IndexConfig,
    build_hnsw,
    copy_merge_embeddings,
    index_status,
    sync_content_vectors,
)
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
    vector_hash,
)

N = 300
KEYS = [f"movie-{i}" for i in range(1, N - 9)] + [f"tv-{i}" for i in range(1, 11)]


def setup_catalogue(conn: psycopg.Connection, n: int = N) -> list[str]:
    keys = KEYS[:n]
    create_dim_content(conn)
    insert_dim_content(conn, [dim_row(k, year=1990 + i % 30) for i, k in enumerate(keys)])
    conn.commit()
    copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(n, seed=11)))
    return keys


def served(conn: psycopg.Connection) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT id, xmin::text, updated_at, content_hash, title, md5(vector::text), metadata FROM vectors.content_vectors"
    ).fetchall()
    conn.commit()
    return {r[0]: r[1:] for r in rows}


def builds(conn: psycopg.Connection) -> int:
    n = conn.execute("SELECT count(*) FROM meta.index_builds").fetchone()[0]
    conn.commit()
    return n


def checksum(conn: psycopg.Connection) -> str:
    value = conn.execute(
        "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM vectors.content_vectors t"
    ).fetchone()[0]
    conn.commit()
    return value


def test_bulk_sync_builds_the_index_and_incremental_sync_does_not(conn):
    keys = setup_catalogue(conn)
    first = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
    assert (first.inserted, first.updated, first.deleted, first.unchanged) == (N, 0, 0, 0)
    assert first.bulk and first.index_rebuilt and first.index_build is not None
    assert first.index_build.rows == N
    assert builds(conn) == 1
    status = index_status(conn)
    conn.commit()
    assert status.exists and status.valid and status.rows_at_last_build == N and status.drift_fraction == 0

    row = conn.execute(
        "SELECT cv.content_id, cv.media_type, cv.title, cv.year, cv.metadata, cv.content_hash, e.embedding_hash, "
        "cv.vector = e.vector FROM vectors.content_vectors cv JOIN vectors.content_embeddings e "
        "ON e.content_key = cv.id WHERE cv.id = 'tv-3'"
    ).fetchone()
    conn.commit()
    content_id, media_type, title, year, metadata, content_hash, embedding_hash, same_vector = row
    assert (content_id, media_type, title) == (3, "tv", "Title tv-3")
    assert content_hash == embedding_hash and same_vector
    assert metadata["genre_names"] == ["Action"] and metadata["runtime"] == 100
    assert len(metadata["overview"]) == 300 and "poster_path" not in metadata  # NULLs are left out

    # a few changes go straight into the indexed table
    before = served(conn)
    changed_vectors = keys[:4]
    new = clustered_vectors(4, seed=12)
    copy_merge_embeddings(conn, [(k, v, "test-model", vector_hash(v)) for k, v in zip(changed_vectors, new)])
    conn.execute("UPDATE analytics.dim_content SET title = 'Renamed' WHERE content_key = %s", (keys[10],))
    conn.execute("UPDATE analytics.dim_content SET popularity = 99 WHERE content_key = %s", (keys[11],))
    conn.commit()
    second = sync_content_vectors(conn)
    assert (second.inserted, second.updated, second.deleted, second.unchanged) == (0, 6, 0, N - 6)
    assert not second.bulk and not second.index_rebuilt and second.index_build is None
    assert builds(conn) == 1
    after = served(conn)
    assert {k for k in before if after[k] != before[k]} == set(changed_vectors) | {keys[10], keys[11]}
    assert all(after[k][1] > before[k][1] for k in changed_vectors)  # updated_at bumped
    assert after[keys[10]][3] == "Renamed" and after[keys[11]][5]["popularity"] == 99
    status = index_status(conn)
    conn.commit()
    assert status.drift_fraction == pytest.approx(6 / N)

    # nothing changed: nothing written
    third = sync_content_vectors(conn)
    assert (third.inserted, third.updated, third.deleted, third.unchanged) == (0, 0, 0, N)
    assert served(conn) == after


def test_sync_deletes_titles_that_disappeared_and_goes_bulk_on_big_changes(conn):
    keys = setup_catalogue(conn)
    sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
    conn.execute("DELETE FROM analytics.dim_content WHERE content_key = ANY(%s)", (keys[:3],))
    conn.execute("DELETE FROM vectors.content_embeddings WHERE content_key = ANY(%s)", (keys[3:5],))
    conn.commit()
    report = sync_content_vectors(conn, bulk_fraction=0.2)
    assert (report.deleted, report.inserted, report.updated) == (5, 0, 0)
    assert not report.bulk
    ids = {r[0] for r in conn.execute("SELECT id FROM vectors.content_vectors").fetchall()}
    conn.commit()
    assert ids == set(keys[5:])

    # new vectors for 40% of the catalogue (same model): more than bulk_fraction, so the index is rebuilt
    # (a model change is not served until complete: test_model_versions.py)
    changed = keys[5:125]
    vs = clustered_vectors(len(changed), seed=13)
    copy_merge_embeddings(conn, [(k, v, "test-model", vector_hash(v)) for k, v in zip(changed, vs)])
    report = sync_content_vectors(conn, bulk_fraction=0.2, index=IndexConfig(parallel_workers=0))
    assert report.bulk and report.index_rebuilt and report.updated == 120
    assert builds(conn) == 2
    assert index_status(conn).valid


@pytest.mark.parametrize("bulk", [False, True], ids=["incremental", "bulk"])
def test_sync_is_one_transaction(conn, bulk):
    keys = setup_catalogue(conn)
    sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
    before, n_builds = checksum(conn), builds(conn)
    # pending work that would run before the failure: deletes and updates
    conn.execute("DELETE FROM analytics.dim_content WHERE content_key = ANY(%s)", (keys[:3],))
    conn.execute("UPDATE analytics.dim_content SET title = 'Changed' WHERE content_key = ANY(%s)", (keys[3:6],))
    # ...and a new title whose dimension row has no title: content_vectors.title is NOT NULL
    insert_dim_content(conn, [dim_row("movie-5000", title=None)])
    conn.commit()
    copy_merge_embeddings(conn, embedding_rows(["movie-5000"], clustered_vectors(1, seed=14)))

    with pytest.raises(psycopg.errors.NotNullViolation):
        sync_content_vectors(conn, bulk_fraction=0.0 if bulk else 1.0, index=IndexConfig(parallel_workers=0))
    assert checksum(conn) == before
    assert builds(conn) == n_builds
    status = index_status(conn)
    conn.commit()
    assert status.exists and status.valid  # the bulk path had dropped it; the rollback brought it back


def test_sync_needs_dim_content(conn):
    with pytest.raises(RuntimeError, match="dim_content does not exist"):
        sync_content_vectors(conn)


def test_build_reports_parallel_workers_from_the_server(conn):
    setup_catalogue(conn)
    sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
    serial = build_hnsw(conn, config=IndexConfig(parallel_workers=0))
    assert serial.parallel_workers_launched == 0
    parallel = build_hnsw(conn, config=IndexConfig(parallel_workers=2))
    # the main fork of 300 TOASTed vectors is tiny: without the reloption Postgres would ask for none
    assert parallel.parallel_workers_requested == 2
    assert parallel.parallel_workers_launched is not None and parallel.parallel_workers_launched >= 1
    assert any("parallel workers" in n for n in parallel.notices)
    reloptions = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'vectors.content_vectors'::regclass").fetchone()[0]
    recorded = conn.execute("SELECT parallel_workers FROM meta.index_builds ORDER BY id DESC LIMIT 1").fetchone()[0]
    conn.commit()
    assert reloptions is None  # the build-time reloption was restored
    assert recorded == parallel.parallel_workers_launched
    status = index_status(conn)
    assert (status.m, status.ef_construction, status.valid) == (16, 64, True)
