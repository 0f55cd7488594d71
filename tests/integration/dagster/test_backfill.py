"""A date-range backfill runs dbt once over the window (vars min_date/max_date), and reruns are idempotent."""

from datetime import date

import dagster as dg
from dagster_dbt import DbtCliResource

from gateway_pipelines.defs.analytics.assets import gateway_dbt_models
from gateway_pipelines.defs.analytics.project import dbt_project
from gateway_pipelines.defs.resources import dbt_executable
from gateway_pipelines.lib.tmdb.genres import MOVIE_GENRES, TV_GENRES
from gateway_pipelines.lib.tmdb.raw_store import ingest, upsert_genres
from gateway_pipelines.lib.tmdb.sources import SampleSource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect

DAYS = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]


def _backfill(db: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [gateway_dbt_models],
        resources={
            "warehouse": WarehouseResource(database_url=db),
            "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        },
        tags={
            "dagster/asset_partition_range_start": DAYS[0].isoformat(),
            "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
        },
    )


def test_range_backfill_is_one_dbt_run_and_reruns_change_nothing(fresh_db):
    records = list(SampleSource(n_movies=90, n_tv=30).records(DAYS[0]))
    with connect(fresh_db) as conn:
        upsert_genres(conn, "movie", [{"id": k, "name": v} for k, v in MOVIE_GENRES.items()])
        upsert_genres(conn, "tv", [{"id": k, "name": v} for k, v in TV_GENRES.items()])
        for i, day in enumerate(DAYS):  # a third of the catalogue lands on each day
            ingest(conn, records[i::3], source="sample", partition=day)
        conn.commit()

    first = _backfill(fresh_db)
    assert first.success
    steps = [e for e in first.all_events if e.event_type_value == "STEP_START"]
    assert len(steps) == 1  # one dbt invocation for the three days
    materialized = {
        (e.asset_key.to_user_string(), e.partition)
        for e in (ev.step_materialization_data.materialization for ev in first.get_asset_materialization_events())
    }
    assert {("stg_tmdb__titles", d.isoformat()) for d in DAYS} <= materialized
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
