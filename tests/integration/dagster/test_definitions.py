"""The code location as a user sees it: assets in their groups, gates that block, jobs, automation."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from gateway_pipelines.definitions import defs as load

    return load()


def _groups(defs):
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}


def test_assets_sit_in_their_domain_groups(defs):
    groups = _groups(defs)
    expected = {
        "warehouse_schema": "warehouse",
        "tmdb_genres": "tmdb",
        "tmdb_titles": "tmdb",
        "stg_tmdb__titles": "analytics",
        "dim_content": "analytics",
        "content_embeddings": "embeddings",
        "content_vectors": "vector_store",
    }
    assert {k: groups.get(k) for k in expected} == expected


def test_every_gate_is_blocking(defs):
    graph = defs.resolve_asset_graph()
    blocking = {
        (key.asset_key.to_user_string(), key.name)
        for key in graph.asset_check_keys
        if graph.get_check_spec(key).blocking
    }
    for gate in [
        ("warehouse_schema", "warehouse_schema_matches_contract"),
        ("tmdb_titles", "reject_ratio_below_threshold"),
        ("tmdb_titles", "payloads_have_expected_shape"),
        ("stg_tmdb__titles", "staged_titles_expectations"),
        ("content_vectors", "content_vectors_recall_at_10"),
        ("content_vectors", "content_vectors_are_unit_768d"),
    ]:
        assert gate in blocking, gate


def test_dbt_tests_are_asset_checks(defs):
    names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert "unique_stg_tmdb__titles_content_key" in names
    assert "accepted_values_stg_tmdb__titles_media_type__movie__tv" in names


def test_only_incremental_models_are_partitioned(defs):
    graph = defs.resolve_asset_graph()
    titles = graph.get(dg.AssetKey("tmdb_titles")).partitions_def
    staged = graph.get(dg.AssetKey("stg_tmdb__titles")).partitions_def
    assert isinstance(titles, dg.DailyPartitionsDefinition) and titles == staged
    assert graph.get(dg.AssetKey("stg_tmdb__titles")).backfill_policy == dg.BackfillPolicy.single_run()
    # whole-table models are one table, not 335 days of it
    assert graph.get(dg.AssetKey("dim_content")).partitions_def is None


def test_dbt_assets_carry_no_unserializable_project(defs):
    graph = defs.resolve_asset_graph()
    for name in ("stg_tmdb__titles", "dim_content"):
        assert "dagster_dbt/project" not in graph.get(dg.AssetKey(name)).metadata


def test_platform_job_sensors_schedules_and_resources(defs):
    job = defs.resolve_job_def("platform_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} >= {
        "warehouse_schema", "tmdb_titles", "stg_tmdb__titles", "dim_content", "content_embeddings", "content_vectors",
    }
    assert defs.resolve_schedule_def("tmdb_api_daily").cron_schedule == "0 3 * * *"
    # the sources' triggers start only tmdb_titles; automation carries the rest
    repository = defs.get_repository_def()
    for trigger in (defs.resolve_sensor_def("tmdb_landing_sensor"), defs.resolve_schedule_def("tmdb_api_daily")):
        assert repository.get_job(trigger.job_name).asset_layer.selected_asset_keys == {dg.AssetKey("tmdb_titles")}
    automation = defs.resolve_sensor_def("platform_automation")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    assert {"warehouse", "dbt", "tmdb", "embeddings", "vector_search"} <= set(defs.resources or {})


SOURCE_TRIGGERS = {"sensor", "schedule", "manual"}


def test_every_asset_has_owners_a_column_schema_and_automation(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners, key
        schema = node.metadata.get("dagster/column_schema")
        assert schema is not None and len(getattr(schema, "schema", schema).columns) >= 3, key
        # Sources are started by their sensors, schedules or a person, and say so in a tag; everything
        # downstream of them must follow by automation.
        if key.to_user_string() != "tmdb_titles" and node.tags.get("gateway/trigger") not in SOURCE_TRIGGERS:
            assert node.automation_condition is not None, key


def test_search_has_a_freshness_policy(defs):
    node = defs.resolve_asset_graph().get(dg.AssetKey("content_vectors"))
    assert node.freshness_policy is not None


def test_tmdb_ingest_has_retries_and_a_pool(defs):
    node = defs.resolve_asset_graph().get(dg.AssetKey("tmdb_titles"))
    assets_def = node.assets_def
    assert assets_def.op.retry_policy.max_retries >= 3
    assert assets_def.op.pool == "tmdb_api"


def test_definitions_validate_from_the_cli():
    """What `dagster definitions validate` (and so `dg check defs`) sees on a fresh checkout."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m", "gateway_pipelines.definitions"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Validation successful" in result.stdout + result.stderr
