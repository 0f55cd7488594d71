"""content_embeddings with provider="wordllama" on the real warehouse: switching from the local model
re-embeds every title under the new model id (the usual hash machinery), streamed batches equal one
build, the coverage path treats it as a model that cannot go stale, and a rerun does nothing."""

from __future__ import annotations

import os
from datetime import date

import numpy as np
import psycopg
import pytest
from psycopg import sql

from gateway_pipelines.defs.embeddings.assets import COVERAGE_CHECK
from gateway_pipelines.lib.embeddings import build_content_vectors
from gateway_pipelines.lib.embeddings.plan import read_catalog
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.embeddings.wordllama_provider import WordLlamaProvider
from gateway_pipelines.lib.warehouse import connect
from tests.integration.vector_store.data import materialize_embeddings, staged_sample_catalogue

N_MOVIES, N_TV = 60, 20
N = N_MOVIES + N_TV
DAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def catalogue(server_url):
    name = f"emb_wordllama_{os.getpid()}"
    url = staged_sample_catalogue(server_url, name, n_movies=N_MOVIES, n_tv=N_TV, day=DAY)
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


_run = materialize_embeddings  # content_embeddings once: (metadata, checks by name)


def _stored(db: str) -> dict[str, np.ndarray]:
    with connect(db) as conn:
        return {k: np.asarray(v.to_numpy(), dtype=np.float32)
                for k, v in conn.execute("SELECT content_key, vector FROM vectors.content_embeddings")}


def test_switching_to_wordllama_reembeds_once_and_never_goes_stale(catalogue, tmp_path):
    models = str(tmp_path / "models")
    local, _ = _run(catalogue, EmbeddingResource(models_dir=models))
    assert local["provider"] == "local" and local["rows_inserted"] == N

    wordllama = EmbeddingResource(provider="wordllama", models_dir=models)
    first, checks = _run(catalogue, wordllama, batch_size=16)
    expected = WordLlamaProvider.load()
    assert first["provider"] == "wordllama" and first["embedding_model"] == expected.model_id
    assert expected.meta["weights_sha256"][:12] in first["embedding_model"]
    # a new model id changes every hash: the whole catalogue is re-embedded, in ceil(80/16) calls
    assert first["rows_embedded"] == N and first["rows_updated"] == N and first["provider_calls"] == 5
    # nothing fitted, so no coverage figures and no refit; the check passes and says why
    assert checks[COVERAGE_CHECK].passed and "not a fitted local model" in checks[COVERAGE_CHECK].description
    assert first["model_refitted"] is False and "vocabulary_coverage" not in first

    stored = _stored(catalogue)
    with connect(catalogue) as conn:
        rows = read_catalog(conn)
        models_in_table = conn.execute("SELECT DISTINCT embedding_model FROM vectors.content_embeddings").fetchall()
    assert models_in_table == [(expected.model_id,)]
    whole = build_content_vectors(rows, expected, wordllama.weights())
    np.testing.assert_array_equal(np.stack([stored[r["content_key"]] for r in rows]), whole)

    again, checks = _run(catalogue, wordllama)
    assert again["provider_calls"] == 0 and again["rows_embedded"] == 0 and again["rows_hashed"] == 0
    assert again["rows_inserted"] == again["rows_updated"] == again["rows_deleted"] == 0
    assert checks[COVERAGE_CHECK].passed
