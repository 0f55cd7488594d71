"""dbt is not invoked when nothing it reads changed since the selected models' last successful build,
and everything downstream still runs; a changed raw row, a dropped table, a failed build or
`full_refresh` / `force` make it build. Through the real dbt assets on a real warehouse."""

import json
from datetime import date

import dagster as dg
import pytest

from gateway_pipelines.defs.analytics.assets import dbt_model_assets
from gateway_pipelines.defs.analytics.checks import staged_titles_expectations
from gateway_pipelines.defs.resources import dbt_executable
from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource
from gateway_pipelines.lib.analytics.skip import subject
from gateway_pipelines.lib.tmdb.genres import MOVIE_GENRES, TV_GENRES
from gateway_pipelines.lib.tmdb.raw_store import ingest, upsert_genres
from gateway_pipelines.lib.tmdb.records import SourceRecord
from gateway_pipelines.lib.tmdb.sources import SampleSource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect
from gateway_pipelines.lib.watermarks import read_entry, table_fingerprint
from gateway_pipelines.settings import DBT_DIR, gateway_home

PARTITIONS = daily_partitions("2026-01-01")
DAY, FAR_DAY = date(2026, 3, 1), date(2026, 3, 10)
STG, DIM = dg.AssetKey("stg_tmdb__titles"), dg.AssetKey("dim_content")
GX = "staged_titles_expectations"
N = 120


@dg.asset(deps=[DIM])
def after_dim_content() -> None:
    """A stand-in for content_embeddings: it must run after a skipped dbt step as after a built one."""
    return None


def _records(seed: int = 7) -> list[SourceRecord]:
    return list(SampleSource(seed=seed, n_movies=90, n_tv=30).records(DAY))


@pytest.fixture
def db(fresh_db):
    with connect(fresh_db) as conn:
        upsert_genres(conn, "movie", [{"id": k, "name": v} for k, v in MOVIE_GENRES.items()])
        upsert_genres(conn, "tv", [{"id": k, "name": v} for k, v in TV_GENRES.items()])
        ingest(conn, _records(), source="sample", partition=DAY)
        conn.commit()
    return fresh_db


def _run(db: str, day: date = DAY, config: dict | None = None, ok: bool = True) -> dg.ExecuteInProcessResult:
    """stg_tmdb__titles for one day, dim_content, their dbt tests and GX suite, and a child: as platform_job."""
    warehouse = WarehouseResource(database_url=db, gateway_home=str(gateway_home()))  # its parse cache
    incremental, tables = dbt_model_assets(PARTITIONS)
    result = dg.materialize(
        [incremental, tables, staged_titles_expectations, after_dim_content],
        selection=[STG, DIM, after_dim_content.key],
        partition_key=day.isoformat(),
        resources={"warehouse": warehouse, "dbt": DbtWarehouseResource(
            project_dir=str(DBT_DIR), dbt_executable=dbt_executable(), warehouse=warehouse)},
        run_config={"ops": {name: {"config": config} for name in ("dbt_incremental_models", "dbt_table_models")}}
        if config else None,
        raise_on_error=False,
    )
    assert result.success or not ok, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result


def _meta(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()
             if e.asset_key == key]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _tables(db: str) -> dict:
    with connect(db) as conn:
        return {t: table_fingerprint(conn, t) for t in ("analytics.stg_tmdb__titles", "analytics.dim_content")}


def test_an_unchanged_rerun_invokes_no_dbt_and_downstream_still_runs(db):
    first = _run(db)
    assert _meta(first, STG)["dbt_skipped"] is False and _meta(first, DIM)["dbt_skipped"] is False
    built_checks = _checks(first)
    assert len(built_checks) > 10 and all(c.passed for c in built_checks.values() if c.severity.value == "ERROR")
    assert built_checks[GX].passed and built_checks[GX].metadata["measured"].value is True
    tables = _tables(db)

    second = _run(db)
    stg, dim = _meta(second, STG), _meta(second, DIM)
    for meta in (stg, dim):
        assert meta["dbt_skipped"] is True and meta["last_build_run_id"] == first.run_id
        assert meta["dagster/row_count"] == N
        assert "dbt tests of" in meta["dbt_tests"] and "not run" in meta["dbt_tests"]
    assert stg["reason"].startswith("raw.tmdb_titles unchanged for 2026-03-01..2026-03-02 since run ")
    assert "analytics.stg_tmdb__titles" in dim["reason"] and "raw.tmdb_genres" in dim["reason"]
    # no dbt test reported a result it did not produce; the GX verdict stands, said to be unmeasured
    checks = _checks(second)
    assert set(checks) == {GX}
    assert checks[GX].passed and checks[GX].metadata["measured"].value is False
    assert checks[GX].metadata["measured_in_run"].value == first.run_id
    assert "not measured again" in checks[GX].description
    # the step after dim_content ran; and no row of either table was rewritten (dbt would have)
    assert after_dim_content.key in {e.asset_key for e in second.get_asset_materialization_events()}
    assert not [e for e in second.all_events if e.event_type_value == "STEP_SKIPPED"]
    assert _tables(db) == tables


def test_a_changed_raw_row_is_built_through_to_dim_content(db):
    _run(db)
    changed = _records()
    changed[5] = SourceRecord(changed[5].media_type, dict(changed[5].record, overview="Rewritten: a lighthouse."),
                              changed[5].ref)
    with connect(db) as conn:
        report = ingest(conn, changed, source="sample", partition=DAY)
        conn.commit()
    assert report.updated == 1

    rebuilt = _run(db)
    stg, dim = _meta(rebuilt, STG), _meta(rebuilt, DIM)
    assert stg["dbt_skipped"] is False and "raw.tmdb_titles changed" in stg["dbt_build_reason"]
    assert dim["dbt_skipped"] is False and "analytics.stg_tmdb__titles changed" in dim["dbt_build_reason"]
    checks = _checks(rebuilt)
    assert len(checks) > 10 and checks[GX].metadata["measured"].value is True
    key = f"{changed[5].media_type}-{changed[5].record['id']}"
    with connect(db) as conn:
        overview = conn.execute("SELECT overview FROM analytics.dim_content WHERE content_key = %s", (key,)).fetchone()
    assert overview == ("Rewritten: a lighthouse.",)


def test_only_the_run_s_window_of_raw_counts(db):
    _run(db)
    far = [SourceRecord("movie", dict(r.record, id=r.record["id"] + 500_000), r.ref) for r in _records(seed=9)[:5]]
    with connect(db) as conn:
        assert ingest(conn, far, source="sample", partition=FAR_DAY).inserted == 5
        conn.commit()
    # another day's new titles are not in this day's window, nor yet in the staging table
    same_day = _run(db)
    assert _meta(same_day, STG)["dbt_skipped"] is True and _meta(same_day, DIM)["dbt_skipped"] is True
    # their own day is built, and dim_content after it, since the staging table changed
    far_day = _run(db, FAR_DAY)
    far_stg = _meta(far_day, STG)
    assert far_stg["dbt_skipped"] is False and "no successful build" in far_stg["dbt_build_reason"]
    assert _meta(far_day, DIM)["dbt_skipped"] is False
    assert _meta(far_day, DIM)["dagster/row_count"] == N + 5


def test_a_table_dropped_since_its_build_is_built_again(db):
    _run(db)
    with connect(db) as conn:
        conn.execute("DROP TABLE analytics.dim_content")
        conn.commit()
    result = _run(db)
    assert _meta(result, STG)["dbt_skipped"] is True
    dim = _meta(result, DIM)
    assert dim["dbt_skipped"] is False
    assert "analytics.dim_content itself changed (missing now)" in dim["dbt_build_reason"]
    assert dim["dagster/row_count"] == N


@pytest.mark.parametrize(("config", "reason"), [({"full_refresh": True}, "full_refresh: true"),
                                                 ({"force": True}, "force: true")])
def test_full_refresh_and_force_always_invoke_dbt(db, config, reason):
    _run(db)
    result = _run(db, config=config)
    for key in (STG, DIM):
        assert _meta(result, key)["dbt_skipped"] is False and _meta(result, key)["dbt_build_reason"].startswith(reason)
    assert len(_checks(result)) > 10  # the dbt tests ran again


def test_a_failed_build_is_not_recorded_so_its_rerun_is_not_skipped(db):
    first = _run(db)
    with connect(db) as conn:  # a score outside 0-10: the staging model's error-severity range test fails
        conn.execute("UPDATE raw.tmdb_titles SET payload = jsonb_set(payload, '{vote_average}', '11') "
                     "WHERE media_type = 'tv' AND id = (SELECT min(id) FROM raw.tmdb_titles WHERE media_type = 'tv')")
        conn.commit()
    for _ in range(2):
        failed = _run(db, ok=False)
        assert not failed.success
        assert _meta(failed, STG)["dbt_skipped"] is False  # built (and its test failed), not skipped
        with connect(db) as conn:
            entry = read_entry(conn, subject("model.gateway.stg_tmdb__titles"), "2026-03-01..2026-03-02")
        assert entry is not None and entry.run_id == first.run_id  # the last good build is still the one on record


def test_the_windowed_source_is_the_one_the_incremental_model_filters_by_the_window():
    """The skip compares only the window's slice of raw.tmdb_titles: that must be what the model reads."""
    from gateway_pipelines.defs.analytics.assets import WINDOWED_SOURCES
    from gateway_pipelines.defs.analytics.project import dbt_project
    from gateway_pipelines.lib.analytics.skip import manifest_nodes

    nodes = manifest_nodes(json.loads(dbt_project().manifest_path.read_text()))
    staged = nodes["model.gateway.stg_tmdb__titles"]
    assert staged.materialized == "incremental" and set(staged.inputs) == set(WINDOWED_SOURCES)
    model = " ".join((DBT_DIR / "models" / "staging" / "stg_tmdb__titles.sql").read_text().split())
    [column] = WINDOWED_SOURCES.values()
    assert (f"where {column} between '{{{{ env_var(\"GATEWAY_DBT_MIN_DATE\") }}}}'::date and "
            f"'{{{{ env_var(\"GATEWAY_DBT_MAX_DATE\") }}}}'::date") in model
