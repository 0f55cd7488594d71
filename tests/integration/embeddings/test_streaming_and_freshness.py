"""content_embeddings at scale, on the real warehouse: the catalogue streams in batches and gives the
same vectors as one whole-catalogue build; a rerun over an unchanged catalogue hashes no row, calls
no provider and writes nothing; the input-digest memo only ever skips work; and a catalogue whose
vocabulary drifted away from the local model (planted unknown words) refits it automatically."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg
import numpy as np
import psycopg
import pytest
from psycopg import sql

from gateway_pipelines.defs.embeddings.assets import COVERAGE_CHECK
from gateway_pipelines.lib.embeddings import LocalLSAProvider, build_content_vectors
from gateway_pipelines.lib.embeddings.plan import read_catalog
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.warehouse import connect
from tests.integration.vector_store.data import materialize_embeddings, staged_sample_catalogue

N_MOVIES, N_TV = 120, 30
N = N_MOVIES + N_TV
DAY = date(2026, 3, 1)


@pytest.fixture(scope="module")
def catalogue(server_url):
    """The sample catalogue through raw and dbt once for the module; tests run in order on it."""
    name = f"emb_stream_{os.getpid()}"
    url = staged_sample_catalogue(server_url, name, n_movies=N_MOVIES, n_tv=N_TV, day=DAY)
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


_run = materialize_embeddings  # content_embeddings once: (metadata, checks by name)


def _stored(db: str) -> dict[str, tuple[np.ndarray, str, object]]:
    with connect(db) as conn:
        return {k: (np.asarray(v.to_numpy(), dtype=np.float32), h, t) for k, v, h, t in conn.execute(
            "SELECT content_key, vector, embedding_hash, embedded_at FROM vectors.content_embeddings")}


def test_streamed_batches_equal_one_build_and_an_unchanged_rerun_does_nothing(catalogue, tmp_path):
    resource = EmbeddingResource(models_dir=str(tmp_path / "models"))
    first, _ = _run(catalogue, resource, batch_size=32)
    assert first["rows_embedded"] == N and first["rows_hashed"] == N and first["provider_calls"] == 5  # ceil(150/32)
    assert first["counts_add_up"] and first["rows_inserted"] == N
    stored = _stored(catalogue)
    with connect(catalogue) as conn:
        rows = read_catalog(conn)
        memo = conn.execute("SELECT count(*) FROM vectors.content_embedding_inputs").fetchone()[0]
    whole = build_content_vectors(rows, LocalLSAProvider.load(tmp_path / "models"), resource.weights())
    np.testing.assert_array_equal(np.stack([stored[r["content_key"]][0] for r in rows]), whole)
    assert memo == N

    again, _ = _run(catalogue, resource)
    assert again["rows_unchanged_by_digest"] == N and again["rows_hashed"] == 0
    assert again["provider_calls"] == 0 and again["rows_embedded"] == 0
    assert again["rows_inserted"] == again["rows_updated"] == again["rows_deleted"] == 0
    assert {k: (h, t) for k, (_, h, t) in _stored(catalogue).items()} == {k: (h, t) for k, (_, h, t) in stored.items()}

    with connect(catalogue) as conn:
        conn.execute("UPDATE analytics.dim_content SET overview = 'A lighthouse keeper befriends a whale.' "
                     "WHERE content_key = 'movie-100002'")
        conn.commit()
    one, _ = _run(catalogue, resource)
    assert (one["rows_hashed"], one["rows_embedded"], one["rows_updated"], one["provider_calls"]) == (1, 1, 1, 1)

    # the memo is only a shortcut: when it no longer matches, every title is hashed again, and the
    # hashes (not the memo) decide that nothing needs embedding
    with connect(catalogue) as conn:
        conn.execute("UPDATE vectors.content_embedding_inputs SET input_digest = gen_random_uuid()")
        conn.commit()
    rehashed, _ = _run(catalogue, resource)
    assert rehashed["rows_hashed"] == N and rehashed["rows_embedded"] == 0 and rehashed["provider_calls"] == 0
    assert rehashed["rows_unchanged"] == N


UNKNOWN = " ".join(f"zq{i}vex" for i in range(120))  # 120 words no sample plot has


def test_a_drifted_vocabulary_warns_and_refits_the_local_model(catalogue, tmp_path):
    models = str(tmp_path / "models")
    base, checks = _run(catalogue, EmbeddingResource(models_dir=models))
    assert checks[COVERAGE_CHECK].passed and base["vocabulary_coverage"] > 0.95
    assert base["catalogue_growth_since_fit"] == 1.0 and base["model_refitted"] is False  # a first fit, not a refit
    # planted drift: 60 new titles (1.4x, below the 2x growth trigger) whose plots are words the model
    # never saw, so the unknown share of the token mass is well above 10%
    with connect(catalogue) as conn:
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analytics' "
            "AND table_name = 'dim_content' ORDER BY ordinal_position")]
        select = [sql.SQL("'drift-' || content_key") if c == "content_key" else
                  sql.SQL("tmdb_id + 900000") if c == "tmdb_id" else
                  sql.SQL("{}").format(sql.Literal(UNKNOWN)) if c == "overview" else
                  sql.Identifier(c) for c in cols]
        conn.execute(sql.SQL("INSERT INTO analytics.dim_content ({}) SELECT {} FROM analytics.dim_content "
                             "ORDER BY content_key LIMIT 60").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(select)))
        conn.commit()

    warned, checks = _run(catalogue, EmbeddingResource(models_dir=models, auto_refit=False))
    assert not checks[COVERAGE_CHECK].passed and checks[COVERAGE_CHECK].severity == dg.AssetCheckSeverity.WARN
    assert warned["model_stale"] is True and warned["vocabulary_coverage"] < 0.9
    assert warned["embedding_model"] == base["embedding_model"] and warned["rows_embedded"] == 60
    assert "zq" in warned["unknown_tokens_top"]

    refit, checks = _run(catalogue, EmbeddingResource(models_dir=models))
    assert refit["model_refitted"] is True and "coverage" in refit["model_refit_reason"]
    assert refit["embedding_model"] != base["embedding_model"]  # a new model version ...
    assert refit["rows_embedded"] == N + 60 and refit["rows_updated"] == N + 60  # ... re-embeds every title
    assert checks[COVERAGE_CHECK].passed and refit["vocabulary_coverage"] > 0.95 and refit["titles_at_fit"] == N + 60
    with connect(catalogue) as conn:
        models_in_table = conn.execute("SELECT DISTINCT embedding_model FROM vectors.content_embeddings").fetchall()
    assert models_in_table == [(refit["embedding_model"],)]
