"""Search never mixes embedding models: the served table holds one model, a model change is not
served until it is complete and swapped in, and queries are embedded with the served model."""

from __future__ import annotations

import numpy as np
import pytest

from gateway_pipelines.lib.vector_store import (
    copy_merge_embeddings,
    search_by_text,
    search_by_vector,
    sync_content_vectors,
)
from gateway_pipelines.lib.vector_store.index import IndexConfig
from gateway_pipelines.lib.vector_store.pool import SearchLogWriter, SearchPool
from gateway_pipelines.lib.vector_store.search import ModelMismatchError, served_model
from gateway_pipelines.lib.warehouse import connect
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
)

N = 400
K = 10
OLD, NEW = "local:tfidf-lsa@aaaa", "local:tfidf-lsa@bbbb"


class Provider:
    """A plot-text provider of one model version: it embeds every text to that version's own
    direction, so a query embedded with the wrong version lands somewhere else entirely."""

    def __init__(self, model_id: str, seed: int):
        self.model_id = model_id
        self.direction = clustered_vectors(1, seed=seed)[0][:512]
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        return np.tile(self.direction / np.linalg.norm(self.direction), (len(texts), 1)).astype(np.float32)


def served_models(conn) -> dict[str, int]:
    rows = dict(conn.execute("SELECT embedding_model, count(*) FROM vectors.content_vectors GROUP BY 1").fetchall())
    conn.commit()
    return rows


def test_a_model_change_is_served_only_once_complete_and_queries_follow_it(fresh_db):
    keys = [f"movie-{i}" for i in range(1, N + 1)]
    old_vectors = clustered_vectors(N, clusters=8, seed=40)
    new_vectors = clustered_vectors(N + 1, clusters=8, seed=41)
    old, new = Provider(OLD, 1), Provider(NEW, 2)
    asked: list[str] = []

    def provider_for(model_id: str):
        asked.append(model_id)
        return {OLD: old, NEW: new}[model_id]

    with connect(fresh_db) as conn, SearchPool(fresh_db, min_size=1, max_size=2) as pool:
        create_dim_content(conn)
        insert_dim_content(conn, [dim_row(k) for k in keys + ["movie-9999"]])
        conn.commit()
        copy_merge_embeddings(conn, embedding_rows(keys, old_vectors, model=OLD))
        first = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
        assert first.embedding_model == OLD and served_model(conn) == OLD
        before = pool.search(old_vectors[0], k=K, model=OLD)  # a pooled connection, prepared statements
        assert before.embedding_model == OLD and before.ids[0] == keys[0]

        # the re-embed is half done (as a failed or still running run leaves it), and a new title
        # exists only under the new model
        half = keys[: N // 2] + ["movie-9999"]
        copy_merge_embeddings(conn, embedding_rows(half, new_vectors[: len(half)], model=NEW))
        partial = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
        assert partial.embedding_model == OLD and partial.shadow is None
        assert served_models(conn) == {OLD: N}  # no vector of the new model is served yet
        assert partial.skipped == 1 and partial.kept_previous == N // 2  # the new title waits; the others keep theirs
        accounting = partial.accounting()
        assert accounting.adds_up and accounting.skip_reason == "awaiting model swap", accounting.problems()
        # a query of the new model is refused, not compared with old vectors
        with pytest.raises(ModelMismatchError, match=OLD):
            search_by_vector(conn, new_vectors[0], k=K, model=NEW, log=False)
        with pytest.raises(ModelMismatchError):
            pool.search(new_vectors[0], k=K, model=NEW, log=False)
        # text search with today's (new) provider embeds the query with the served (old) one
        result = search_by_text(conn, "a query", new, k=K, provider_for=provider_for, log=False)
        assert asked == [OLD] and old.calls == 1 and new.calls == 0
        assert {h.embedding_model for h in result.hits} == {OLD}
        with pytest.raises(ModelMismatchError):
            search_by_text(conn, "a query", new, k=K, log=False)  # and without a way to get it, says so

        # the re-embed completes: the new model is built in a shadow and swapped in
        rest = keys[N // 2 :]
        copy_merge_embeddings(conn, embedding_rows(rest, new_vectors[N // 2 + 1 : N + 1], model=NEW))
        swapped = sync_content_vectors(conn, index=IndexConfig(parallel_workers=0))
        assert swapped.rebuild_reason == f"embedding model {OLD} → {NEW}" and swapped.shadow is not None
        assert served_models(conn) == {NEW: N + 1} and served_model(conn) == NEW
        assert swapped.accounting().adds_up, swapped.accounting().problems()
        # the pooled connection, whose statements were prepared on the old table, now finds the new one
        after = pool.search(new_vectors[0], k=K, model=NEW)
        assert after.embedding_model == NEW and after.ids[0] == keys[0]
        with pytest.raises(ModelMismatchError):
            pool.search(old_vectors[0], k=K, model=OLD)
        asked.clear()
        result = search_by_text(conn, "a query", new, k=K, provider_for=provider_for, log=False)
        assert asked == [] and new.calls == 1 and {h.embedding_model for h in result.hits} == {NEW}
        pool.logs.flush()
        assert pool.logs.written == 2 and pool.logs.dropped == 0
    with connect(fresh_db) as conn:
        logged = conn.execute("SELECT count(*), min(search_type) FROM vectors.vector_search_logs").fetchone()
    assert logged == (2, "vector")  # the two logged pool searches; the refused ones wrote nothing


def test_the_log_writer_keeps_rows_while_the_database_refuses_them(fresh_db):
    from contextlib import contextmanager

    from gateway_pipelines.lib.warehouse import connect as open_conn

    broken = {"on": True}

    @contextmanager
    def connection():
        if broken["on"]:
            raise ConnectionError("database unreachable")
        with open_conn(fresh_db, autocommit=True) as conn:
            yield conn

    writer = SearchLogWriter(connection, flush_rows=5, flush_s=0.05)
    try:
        q = clustered_vectors(1, seed=3)[0]
        for i in range(12):
            writer.add((q, f"query {i}", {"_search": {"k": K}}, ["movie-1"], None, "vector", 0.5))
        assert not writer.flush(timeout=1.0)  # nothing can be written yet
        assert writer.failed_flushes >= 1 and writer.pending == 12 and writer.dropped == 0
        broken["on"] = False
        assert writer.flush(timeout=10.0)
    finally:
        writer.close()
    assert writer.written == 12 and writer.dropped == 0
    with connect(fresh_db) as conn:
        texts = [r[0] for r in conn.execute("SELECT query_text FROM vectors.vector_search_logs ORDER BY id")]
    assert texts == [f"query {i}" for i in range(12)]  # every row, in order
