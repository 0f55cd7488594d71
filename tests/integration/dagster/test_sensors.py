"""The landing sensor launches one run per file (name + checksum), and the API schedule needs a key."""

import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.defs.tmdb.schedules import tmdb_api_daily
from gateway_pipelines.defs.tmdb.sensors import build_landing_sensor
from gateway_pipelines.lib.tmdb.resource import TMDBResource

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tmdb"


def test_landing_sensor_fires_once_per_file(tmp_path):
    landing = tmp_path / "landing" / "tmdb"
    landing.mkdir(parents=True)
    sensor = build_landing_sensor(daily_partitions("2026-01-01"))
    # the folder comes from the resource, never from the environment
    tmdb = TMDBResource(landing_dir=str(landing))

    def _evaluate(cursor=None):
        with dg.DagsterInstance.ephemeral() as instance:
            return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"tmdb": tmdb}))

    assert isinstance(_evaluate(), dg.SkipReason)
    assert str(landing) in _evaluate().skip_message

    shutil.copy(FIXTURES / "tmdb_5000_movies_sample.csv", landing / "tmdb_5000_movies.csv")
    shutil.copy(FIXTURES / "movie_ids_01_15_2025.json.gz", landing / "movie_ids_03_02_2026.json.gz")
    (landing / "notes.txt").write_text("ignored")
    first = _evaluate()
    assert isinstance(first, dg.SensorResult)
    by_source = {r.tags["gateway/source"]: r for r in first.run_requests}
    assert set(by_source) == {"csv_dump", "export"}
    assert by_source["export"].partition_key == "2026-03-02"  # the export's own date
    config = by_source["csv_dump"].run_config["ops"]["tmdb_titles"]["config"]
    assert config["source"] == "csv_dump" and config["path"].endswith("tmdb_5000_movies.csv")

    # the next tick sees the same files: nothing new
    second = _evaluate(first.cursor)
    assert isinstance(second, dg.SkipReason)

    # a corrected file with the same name is new content: one more run, keyed by the new checksum
    (landing / "tmdb_5000_movies.csv").write_text((FIXTURES / "tmdb_5000_movies_sample.csv").read_text() + "\n")
    third = _evaluate(first.cursor)
    assert [r.tags["gateway/file"] for r in third.run_requests] == ["tmdb_5000_movies.csv"]
    assert third.run_requests[0].run_key != by_source["csv_dump"].run_key


def test_api_schedule_skips_without_a_key_and_targets_yesterday_with_one():
    when = datetime(2026, 3, 10, 3, 0, tzinfo=timezone.utc)
    no_key = dg.build_schedule_context(scheduled_execution_time=when, resources={"tmdb": TMDBResource()})
    skipped = tmdb_api_daily(no_key)
    assert isinstance(skipped, dg.SkipReason) and "TMDB_API_KEY" in skipped.skip_message
    keyed = dg.build_schedule_context(scheduled_execution_time=when, resources={"tmdb": TMDBResource(api_key="k")})
    request = tmdb_api_daily(keyed)
    assert request.partition_key == "2026-03-09"
    assert request.run_config["ops"]["tmdb_titles"]["config"]["source"] == "api"


def test_content_vectors_repairs_a_drifted_or_missing_index(fresh_db):
    """What the old drift sensor did is now part of every content_vectors materialisation."""
    from gateway_pipelines.defs.vector_store.assets import content_vectors
    from gateway_pipelines.lib.vector_store import copy_merge_embeddings, sync_content_vectors
    from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
    from gateway_pipelines.lib.warehouse import WarehouseResource, connect
    from tests.integration.vector_store.data import (
        clustered_vectors,
        create_dim_content,
        dim_row,
        embedding_rows,
        insert_dim_content,
    )

    def materialise() -> dict:
        result = dg.materialize([content_vectors], resources={
            "warehouse": WarehouseResource(database_url=fresh_db), "vector_search": VectorSearchResource(recall_queries=50)})
        assert result.success
        [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
        return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}

    vectors = clustered_vectors(400, seed=3)
    keys = [f"movie-{i}" for i in range(1, 401)]
    with connect(fresh_db) as conn:
        create_dim_content(conn)
        insert_dim_content(conn, [dim_row(k) for k in keys[:200]])
        conn.commit()
        copy_merge_embeddings(conn, embedding_rows(keys[:200], vectors[:200]))
        sync_content_vectors(conn)  # bulk: builds and records the index
    healthy = materialise()
    assert healthy["index_rebuilt"] is False and healthy["index_rebuild_reason"] == "none"

    with connect(fresh_db) as conn:
        insert_dim_content(conn, [dim_row(k) for k in keys[200:]])
        conn.commit()
        copy_merge_embeddings(conn, embedding_rows(keys[200:], vectors[200:]))
        assert not sync_content_vectors(conn, bulk_fraction=1.0).index_rebuilt  # incremental: 100% drift
    drifted = materialise()
    assert drifted["index_rebuilt"] is True and "moved 100%" in drifted["index_rebuild_reason"]
    assert materialise()["index_rebuilt"] is False  # the rebuild reset the drift

    with connect(fresh_db) as conn:
        conn.execute("DROP INDEX vectors.content_vectors_vector_hnsw")
        conn.commit()
    repaired = materialise()
    # the sync itself rebuilds a missing index before the asset looks
    assert repaired["index_rebuilt"] is True and repaired["index_valid"] is True
