"""A long re-embed commits as it goes: a run that dies keeps its committed chunks, and the rerun writes
only the rest (the plan then skips the titles whose stored hash is already the new one)."""

from __future__ import annotations

import pytest

from gateway_pipelines.lib.vector_store.loader import load_resumably
from tests.integration.vector_store.data import clustered_vectors, embedding_rows

N = 250


def _rows(model: str, seed: int = 3):
    """A new model gives new vectors, so new hashes (the hash is of the vector here)."""
    keys = [f"movie-{i}" for i in range(1, N + 1)]
    return embedding_rows(keys, clustered_vectors(N, seed=seed), model=model)


def _stored(conn) -> dict[str, str]:
    rows = dict(conn.execute("SELECT content_key, embedding_model FROM vectors.content_embeddings").fetchall())
    conn.commit()
    return rows


def test_a_killed_reembed_keeps_its_committed_chunks_and_the_rerun_writes_only_the_rest(conn):
    first = load_resumably(conn, _rows("old-model"), delete_missing_keys=(), chunk_rows=100)
    assert (first.inserted, first.rows_before, first.rows_after) == (N, 0, N)
    assert first.path == "direct+staged"  # the first chunk into the empty table, the others merged

    new_rows = _rows("new-model", seed=4)

    def dies_after(n):
        yield from new_rows[:n]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        load_resumably(conn, dies_after(230), delete_missing_keys=(), chunk_rows=100)
    conn.rollback()
    stored = _stored(conn)
    # two whole chunks committed, the third (30 rows read before the failure) not at all
    assert sum(m == "new-model" for m in stored.values()) == 200 and len(stored) == N

    rerun = load_resumably(conn, new_rows, delete_missing_keys=(), chunk_rows=100)
    assert (rerun.updated, rerun.unchanged, rerun.inserted) == (50, 200, 0)
    assert rerun.rows_before == rerun.rows_after == N
    assert set(_stored(conn).values()) == {"new-model"}


def test_deletions_go_with_the_first_chunk_and_counts_add_up(conn):
    load_resumably(conn, _rows("m"), delete_missing_keys=(), chunk_rows=100)
    keep = _rows("m")[:240]
    gone = [r[0] for r in _rows("m")[240:]]
    report = load_resumably(conn, keep, delete_missing_keys=gone, chunk_rows=100)
    assert (report.deleted, report.unchanged, report.inserted, report.updated) == (10, 240, 0, 0)
    assert (report.rows_before, report.rows_after) == (N, 240)
    empty = load_resumably(conn, [], delete_missing_keys=(), chunk_rows=100)
    assert (empty.staged, empty.rows_after) == (0, 240)
