"""content_embeddings through Dagster: OpenAI when a key is set (a local server speaking its API),
the local model otherwise; only changed titles are embedded; a model or weight change re-embeds all."""

import itertools
import os
from datetime import date

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from gateway_pipelines.defs.embeddings.assets import content_embeddings
from gateway_pipelines.lib.embeddings.resource import EmbeddingResource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect, with_database
from tests.fakes.openai_server import FakeOpenAIServer
from tests.integration.vector_store.data import staged_sample_catalogue

N_MOVIES, N_TV = 250, 50
DAY = date(2026, 3, 1)
_copies = itertools.count()


@pytest.fixture(scope="module")
def staged_template(server_url):
    """The sample catalogue through the real path once per module: raw tables, then the dbt models.
    Each test gets a copy (CREATE DATABASE … TEMPLATE), so staging is never re-implemented here."""
    name = f"emb_tpl_{os.getpid()}"
    staged_sample_catalogue(server_url, name, n_movies=N_MOVIES, n_tv=N_TV, day=DAY)
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def catalogue_db(server_url, staged_template):
    name = f"emb_{os.getpid()}_{next(_copies)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(staged_template)))
    url = with_database(server_url, name)
    with connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM analytics.dim_content").fetchone()[0] == N_MOVIES + N_TV
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _run(db, embeddings: EmbeddingResource) -> dict:
    result = dg.materialize(
        [content_embeddings], resources={"warehouse": WarehouseResource(database_url=db), "embeddings": embeddings}
    )
    assert result.success
    [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def test_openai_key_switches_the_real_client_on_and_reruns_make_no_calls(catalogue_db, tmp_path):
    with FakeOpenAIServer() as openai:
        resource = EmbeddingResource(openai_api_key=openai.api_key, openai_base_url=openai.base_url,
                                     models_dir=str(tmp_path / "models"))
        first = _run(catalogue_db, resource)
        sent_first = len(openai.embedding_requests)
        second = _run(catalogue_db, resource)
        sent_second = len(openai.embedding_requests) - sent_first
        with connect(catalogue_db) as conn:
            conn.execute("UPDATE analytics.dim_content SET overview = 'A lighthouse keeper befriends a whale.' "
                         "WHERE content_key = 'movie-100002'")
            conn.commit()
        third = _run(catalogue_db, resource)
        last_request = openai.embedding_requests[-1]
    assert first["provider"] == "openai" and first["embedding_model"].startswith("openai:text-embedding-3-small")
    assert first["rows_embedded"] == N_MOVIES + N_TV and sent_first == first["provider_calls"] >= 1
    assert second["rows_embedded"] == 0 and second["provider_calls"] == 0 and sent_second == 0
    assert third["rows_embedded"] == 1 and third["provider_calls"] == 1
    assert last_request.body["dimensions"] == 512 and len(last_request.body["input"]) == 1
    assert "lighthouse keeper" in last_request.body["input"][0]
    assert not (tmp_path / "models").exists()  # OpenAI: no local model fitted


def test_local_model_by_default_and_a_weight_change_re_embeds_everything(catalogue_db, tmp_path):
    models_dir = str(tmp_path / "models")
    first = _run(catalogue_db, EmbeddingResource(models_dir=models_dir))
    again = _run(catalogue_db, EmbeddingResource(models_dir=models_dir))
    reweighted = _run(catalogue_db, EmbeddingResource(models_dir=models_dir, genre_weight=0.9))
    assert first["provider"] == "local" and first["rows_embedded"] == N_MOVIES + N_TV
    assert again["rows_embedded"] == 0 and again["provider_calls"] == 0
    assert reweighted["rows_embedded"] == N_MOVIES + N_TV
    assert (tmp_path / "models").is_dir() and any((tmp_path / "models").iterdir())


def test_titles_that_disappear_lose_their_embedding(catalogue_db, tmp_path):
    _run(catalogue_db, EmbeddingResource(models_dir=str(tmp_path / "models")))
    with connect(catalogue_db) as conn:
        conn.execute("DELETE FROM analytics.dim_content WHERE content_key IN ('movie-100001', 'tv-100001')")
        conn.commit()
    after = _run(catalogue_db, EmbeddingResource(models_dir=str(tmp_path / "models")))
    with connect(catalogue_db) as conn:
        keys = {r[0] for r in conn.execute("SELECT content_key FROM vectors.content_embeddings")}
    assert after["rows_deleted"] == 2 and after["rows_embedded"] == 0
    assert "movie-100001" not in keys and len(keys) == N_MOVIES + N_TV - 2


def test_content_vectors_serves_the_embeddings_and_rebuilds_on_request(catalogue_db, tmp_path):
    from gateway_pipelines.defs.vector_store.assets import content_vectors
    from gateway_pipelines.lib.vector_store.resource import VectorSearchResource

    _run(catalogue_db, EmbeddingResource(models_dir=str(tmp_path / "models")))
    resources = {"warehouse": WarehouseResource(database_url=catalogue_db), "vector_search": VectorSearchResource()}

    def materialise(force: bool) -> dict:
        result = dg.materialize([content_vectors], resources=resources, run_config={
            "ops": {"content_vectors": {"config": {"force_index_rebuild": force}}}})
        [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
        return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}

    first, plain, forced = materialise(False), materialise(False), materialise(True)
    assert first["rows_inserted"] == N_MOVIES + N_TV and first["index_rebuilt"] is True
    assert plain["rows_unchanged"] == N_MOVIES + N_TV and plain["index_rebuilt"] is False
    assert forced["index_rebuilt"] is True and forced["index_valid"] is True
    with connect(catalogue_db) as conn:
        assert conn.execute("SELECT count(*) FROM meta.index_builds").fetchone()[0] == 2
    assert "recall_by_ef_search" in first and "| 100 |" in first["recall_by_ef_search"]
