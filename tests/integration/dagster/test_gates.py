"""Blocking checks stop bad data: a broken schema or a flood of rejects keeps downstream assets from running."""

import shutil
from pathlib import Path

import dagster as dg

from gateway_pipelines.defs.tmdb.assets import REJECT_RATIO_CHECK, tmdb_genres, tmdb_titles
from gateway_pipelines.defs.warehouse.assets import warehouse_schema
from gateway_pipelines.defs.warehouse.checks import warehouse_schema_matches_contract
from gateway_pipelines.lib.tmdb.resource import TMDBResource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tmdb"


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_schema_contract_passes_on_a_migrated_warehouse(fresh_db):
    result = dg.materialize(
        [warehouse_schema, warehouse_schema_matches_contract, tmdb_genres],
        resources={"warehouse": WarehouseResource(database_url=fresh_db), "tmdb": TMDBResource()},
    )
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert _materialized(result) == {"warehouse_schema", "tmdb_genres"}


def test_dropped_column_fails_the_check_and_blocks_downstream(fresh_db):
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE vectors.content_vectors DROP COLUMN title")
    result = dg.materialize(
        [warehouse_schema, warehouse_schema_matches_contract, tmdb_genres],
        resources={"warehouse": WarehouseResource(database_url=fresh_db), "tmdb": TMDBResource()},
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    missing = evaluation.metadata["missing"].value
    assert "column:vectors.content_vectors.title:text" in missing
    assert "tmdb_genres" not in _materialized(result)  # the blocking gate held
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM raw.tmdb_genres").fetchone()[0] == 0


def test_reject_flood_fails_the_blocking_gate(fresh_db, tmp_path):
    """A dump where most rows are bad: the run loads the good ones, quarantines the rest, and the gate fails."""
    good = [line for line in (FIXTURES / "tmdb_5000_movies_sample.csv").read_text().splitlines()]
    header, rows = good[0], good[1:]
    broken = [header] + rows[:2] + [r.replace(",Released,", ",Released,") for r in rows[2:]]
    bad_rows = [f"0,[],,{-i},en,Bad {i},x,1.0,[],[],2020-01-01,0,90,[],Released,,,5.0,10" for i in range(1, 20)]
    dump = tmp_path / "dump.csv"
    dump.write_text("\n".join(broken + bad_rows) + "\n")
    resources = {"warehouse": WarehouseResource(database_url=fresh_db), "tmdb": TMDBResource()}
    dg.materialize([warehouse_schema], resources=resources)
    result = dg.materialize(
        [tmdb_titles],
        partition_key="2026-03-01",
        resources=resources,
        run_config={"ops": {"tmdb_titles": {"config": {"source": "csv_dump", "path": str(dump)}}}},
        raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks[REJECT_RATIO_CHECK].passed
    assert checks[REJECT_RATIO_CHECK].metadata["rejected"].value >= 19
    with connect(fresh_db) as conn:
        loaded = conn.execute("SELECT count(*) FROM raw.tmdb_titles").fetchone()[0]
        rejected = conn.execute("SELECT count(*) FROM raw.tmdb_rejects").fetchone()[0]
    assert loaded > 0 and rejected >= 19  # nothing lost: every row is somewhere, with a reason
