"""Recall history: one row in meta.recall_measurements per content_vectors materialisation, and the plot."""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from gateway_pipelines.defs.vector_store.assets import PLOT_FILE, content_vectors
from gateway_pipelines.lib.vector_store import (
    RecallMeasurement,
    RecallPoint,
    ef_search_sweep,
    index_status,
    measure_serving_recall,
    recall_plot_png,
    recent_measurements,
    record_measurement,
)
from gateway_pipelines.lib.vector_store.resource import VectorSearchResource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from tests.integration.vector_store.data import (
    clustered_vectors,
    create_dim_content,
    dim_row,
    embedding_rows,
    insert_dim_content,
)

N = 1200
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG_MAGIC
    return struct.unpack(">II", png[16:24])  # IHDR: width, height


def measurements(url: str) -> list[tuple]:
    with connect(url) as conn:
        return conn.execute(
            "SELECT table_rows, m, ef_construction, ef_search, k, recall, p50_ms, p99_ms, queries, index_rebuilt, "
            "built_at, run_id, jsonb_path_query_array(sweep, '$[*].ef_search') FROM meta.recall_measurements "
            "ORDER BY id"
        ).fetchall()


@pytest.fixture
def catalogue_db(fresh_db: str) -> str:
    from gateway_pipelines.lib.vector_store import copy_merge_embeddings

    keys = [f"movie-{i}" for i in range(1, N + 1)]
    with connect(fresh_db) as conn:
        create_dim_content(conn)
        insert_dim_content(conn, [dim_row(k) for k in keys])
        conn.commit()
        copy_merge_embeddings(conn, embedding_rows(keys, clustered_vectors(N, clusters=20, seed=5)))
    return fresh_db


def materialise(url: str, vector_search: VectorSearchResource, *, force: bool = False):
    result = dg.materialize(
        [content_vectors],
        resources={"warehouse": WarehouseResource(database_url=url), "vector_search": vector_search},
        run_config={"ops": {"content_vectors": {"config": {"force_index_rebuild": force}}}},
    )
    [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    return result.run_id, mat.metadata


def test_each_materialisation_records_one_measurement_and_the_plot_shows_the_history(catalogue_db, tmp_path):
    artifacts = tmp_path / "artifacts"
    no_file = VectorSearchResource(recall_queries=40)
    with_file = VectorSearchResource(recall_queries=40, artifacts_dir=str(artifacts))

    first_run, first = materialise(catalogue_db, no_file)
    assert len(measurements(catalogue_db)) == 1
    assert "recall_plot_file" not in first and not artifacts.exists()
    second_run, second = materialise(catalogue_db, with_file)
    # nothing written and the same index build: the sweep is not paid for again, the figures shown
    # are those of the measurement it would repeat
    assert len(measurements(catalogue_db)) == 1
    assert second["recall_reused"].value is True and second["recall_measured"].value is False
    third_run, third = materialise(catalogue_db, with_file, force=True)
    rows = measurements(catalogue_db)
    assert len(rows) == 2
    assert first["recall_reused"].value is False and third["recall_reused"].value is False

    assert [r[9] for r in rows] == [True, True]  # bulk build, forced rebuild
    assert [r[11] for r in rows] == [first_run, third_run]
    for table_rows, m, efc, ef, k, recall, p50, p99, queries, _, built_at, _, sweep in rows:
        assert (table_rows, m, efc, ef, k, queries) == (N, 16, 64, 100, 10, 40)
        assert 0.0 <= recall <= 1.0 and 0 < p50 <= p99 and built_at is not None
        assert sweep == [10, 20, 40, 80, 100, 200]

    # the float metadata Dagster plots over time are the recorded figures
    for meta, row in zip((first, second, third), (rows[0], rows[0], rows[1])):
        assert isinstance(meta["recall_at_serving_ef"], dg.FloatMetadataValue)
        assert meta["recall_at_serving_ef"].value == pytest.approx(row[5], abs=1e-4)
        assert meta["p50_ms"].value == pytest.approx(row[6], abs=1e-3)
        assert meta["p99_ms"].value == pytest.approx(row[7], abs=1e-3)
        assert meta["rows_at_last_build"].value == N and meta["index_drift_fraction"].value == 0.0

    # the file is the very PNG shown in the UI, and it has the history panel under the sweep
    path = third["recall_plot_file"].value
    assert path == str(artifacts / PLOT_FILE)
    embedded = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", third["recall_plot"].value).group(1))
    with open(path, "rb") as f:
        assert f.read() == embedded
    width, height = png_size(embedded)
    assert height > width  # two stacked panels (one panel is wider than tall)
    alt_text = third["recall_plot"].value.split("](", 1)[0]
    assert f"{N:,} rows" in alt_text and "m=16, ef_construction=64" in alt_text


def test_content_vectors_counts_add_up(catalogue_db):
    _, first = materialise(catalogue_db, VectorSearchResource(recall_queries=20))
    with connect(catalogue_db) as conn:
        conn.execute("DELETE FROM analytics.dim_content WHERE content_key IN ('movie-1', 'movie-2', 'movie-3')")
        conn.execute("UPDATE analytics.dim_content SET title = 'Renamed' WHERE content_key IN ('movie-10', 'movie-11')")
        conn.commit()
    _, second = materialise(catalogue_db, VectorSearchResource(recall_queries=20))
    value = {k: getattr(v, "value", v) for k, v in second.items()}
    assert {k: first[k].value for k in ("rows_in", "rows_inserted", "rows_before", "rows_after", "counts_add_up")} == {
        "rows_in": N, "rows_inserted": N, "rows_before": 0, "rows_after": N, "counts_add_up": True}
    assert (value["rows_in"], value["rows_inserted"], value["rows_updated"], value["rows_unchanged"],
            value["rows_deleted"], value["rows_before"], value["rows_after"]) == (N - 3, 0, 2, N - 5, 3, N, N - 3)
    assert value["counts_add_up"] is True and value["dagster/row_count"] == N - 3
    assert value["rows_at_last_build"] == N  # 5 rows changed: under bulk_fraction, no rebuild
    assert value["index_drift_fraction"] == pytest.approx(5 / N, abs=1e-4)


def _measurement(i: int, when: datetime) -> RecallMeasurement:
    sweep = (RecallPoint(10, 0.8 + i / 100, 0.2, 0.5, 900.0, 10, 30), RecallPoint(100, 0.97, 0.6, 1.4, 400.0, 10, 30))
    return RecallMeasurement(table_rows=1000 + i, m=16, ef_construction=64, ef_search=100, k=10, recall=0.97,
                             p50_ms=0.6, p99_ms=1.4 + i, queries=30, index_rebuilt=i % 2 == 0, built_at=when,
                             rows_at_last_build=1000, sweep=sweep)


def test_recent_measurements_are_the_newest_oldest_first_with_their_sweep(conn):
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    recorded = [record_measurement(conn, _measurement(i, start + timedelta(days=i)), run_id=f"run-{i}") for i in range(5)]
    assert [r.id for r in recorded] == sorted(r.id for r in recorded) and all(r.measured_at for r in recorded)
    record_measurement(conn, replace(_measurement(9, start), table_name="vectors.other"))

    recent = recent_measurements(conn, limit=3)
    assert [r.run_id for r in recent] == ["run-2", "run-3", "run-4"]
    assert [r.table_rows for r in recent] == [1002, 1003, 1004]
    assert recent[-1].sweep == _measurement(4, start).sweep
    assert [r.index_rebuilt for r in recent] == [True, False, True]
    png = recall_plot_png(recent[-1].sweep, history=recent, serving_ef=100, min_recall=0.95, recall_floor=0.9)
    assert png_size(png)[1] > png_size(recall_plot_png(recent[-1].sweep))[1]  # the history panel is drawn


def test_measuring_refuses_an_empty_table_or_a_missing_index(conn):
    with pytest.raises(ValueError, match="empty"):
        measure_serving_recall(conn, index_status(conn), serving_ef=100, index_rebuilt=False)
    conn.execute("DROP INDEX vectors.content_vectors_vector_hnsw")
    conn.commit()
    with pytest.raises(ValueError, match="missing"):
        measure_serving_recall(conn, index_status(conn), serving_ef=100, index_rebuilt=False)


def test_sweep_reaches_down_to_k_and_always_holds_the_serving_value():
    assert ef_search_sweep(100) == (10, 20, 40, 80, 100, 200)
    assert ef_search_sweep(150) == (10, 20, 40, 80, 100, 150, 200)
    assert ef_search_sweep(5, k=10) == (10, 20, 40, 80, 100, 200)  # HNSW returns at most ef_search rows
    assert ef_search_sweep(64, k=50) == (64, 80, 100, 200)
    with pytest.raises(ValueError):
        ef_search_sweep(2000)


def test_plot_needs_something_to_draw():
    with pytest.raises(ValueError, match="nothing to plot"):
        recall_plot_png([])
