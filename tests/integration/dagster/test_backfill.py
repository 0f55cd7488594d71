"""A date-range backfill runs the incremental dbt model once over the window (GATEWAY_DBT_MIN/MAX_DATE)
and the whole-table model once after it; reruns are idempotent, and full_refresh rebuilds from raw."""

from datetime import date

import dagster as dg

from gateway_pipelines.defs.analytics.assets import dbt_model_assets
from gateway_pipelines.defs.resources import dbt_executable
from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource
from gateway_pipelines.lib.tmdb.genres import MOVIE_GENRES, TV_GENRES
from gateway_pipelines.lib.tmdb.raw_store import ingest, upsert_genres
from gateway_pipelines.lib.tmdb.sources import SampleSource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from gateway_pipelines.settings import DBT_DIR, gateway_home

DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]


def _backfill(db: str, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    warehouse = WarehouseResource(database_url=db, gateway_home=str(gateway_home()))  # its parse cache
    return dg.materialize(
        list(dbt_model_assets(daily_partitions("2026-01-01"))),
        resources={
            "warehouse": warehouse,
            "dbt": DbtWarehouseResource(project_dir=str(DBT_DIR), dbt_executable=dbt_executable(), warehouse=warehouse),
        },
        run_config=run_config,
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
    )


def test_range_backfill_is_one_dbt_run_reruns_change_nothing_and_full_refresh_rebuilds(fresh_db):
    records = list(SampleSource(n_movies=90, n_tv=30).records(DAYS[0]))
    with connect(fresh_db) as conn:
        upsert_genres(conn, "movie", [{"id": k, "name": v} for k, v in MOVIE_GENRES.items()])
        upsert_genres(conn, "tv", [{"id": k, "name": v} for k, v in TV_GENRES.items()])
        for i, day in enumerate(DAYS):  # a third of the catalogue lands on each day
            ingest(conn, records[i::3], source="sample", partition=day)
        conn.commit()

    first = _backfill(fresh_db)
    assert first.success
    steps = [e.step_key for e in first.all_events if e.event_type_value == "STEP_START"]
    # one dbt invocation for the three days of the incremental model, one for the whole table after it
    assert sorted(steps) == ["dbt_incremental_models", "dbt_table_models"]
    materialized = [
        (e.asset_key.to_user_string(), e.partition)
        for e in (ev.step_materialization_data.materialization for ev in first.get_asset_materialization_events())
    ]
    assert {("stg_tmdb__titles", d.isoformat()) for d in DAYS} <= set(materialized)
    assert [m for m in materialized if m[0] == "dim_content"] == [("dim_content", None)]  # one table, no days
    # row counts work on a database not named as at parse time (the manifest's names are portable)
    [dim] = [ev.step_materialization_data.materialization for ev in first.get_asset_materialization_events()
             if ev.asset_key.to_user_string() == "dim_content"]
    assert dim.metadata["dagster/row_count"].value == 120
    with connect(fresh_db) as conn:
        before = conn.execute(
            "SELECT content_key, title, genre_names FROM analytics.dim_content ORDER BY 1"
        ).fetchall()
    assert len(before) == 120 and all(row[2] for row in before)  # genre names joined in

    second = _backfill(fresh_db)
    assert second.success
    with connect(fresh_db) as conn:
        after = conn.execute("SELECT content_key, title, genre_names FROM analytics.dim_content ORDER BY 1").fetchall()
        staged = conn.execute("SELECT count(*), count(DISTINCT content_key) FROM analytics.stg_tmdb__titles").fetchone()
    assert after == before
    assert staged == (120, 120)


    # full_refresh rebuilds the incremental model from all of raw: a row dbt would never rewrite
    # incrementally (its content_key is in no window) is gone afterwards
    with connect(fresh_db) as conn:
        conn.execute("INSERT INTO analytics.stg_tmdb__titles (content_key, tmdb_id, media_type, title) "
                     "VALUES ('movie-999999', 999999, 'movie', 'Orphan')")
        conn.commit()
    config = {"ops": {name: {"config": {"full_refresh": True}} for name in ("dbt_incremental_models", "dbt_table_models")}}
    assert _backfill(fresh_db, config).success
    with connect(fresh_db) as conn:
        keys = conn.execute("SELECT count(*), count(*) FILTER (WHERE content_key = 'movie-999999') "
                            "FROM analytics.stg_tmdb__titles").fetchone()
    assert keys == (120, 0)
