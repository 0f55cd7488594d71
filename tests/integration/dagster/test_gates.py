"""Gates that tell the truth: a broken schema or a flood of rejects holds downstream back (and the
flood's rows out of raw), failures that no retry can fix fail once with their reason as headline,
and empty or repeated days are flagged."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from gateway_pipelines.defs.tmdb.assets import (
    GENRES_SCHEMA,
    NEW_DATA_CHECK,
    PAYLOAD_SHAPE_CHECK,
    REJECT_RATIO_CHECK,
    TITLES_SCHEMA,
    build_tmdb_titles,
    tmdb_genres,
)
from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.defs.warehouse.assets import warehouse_schema
from gateway_pipelines.defs.warehouse.checks import warehouse_schema_matches_contract
from gateway_pipelines.lib.tmdb.resource import TMDBResource
from gateway_pipelines.lib.warehouse import WarehouseResource, connect

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tmdb"
PARTITIONS = daily_partitions("2026-01-01")
TITLES = build_tmdb_titles(PARTITIONS)
DAY, OTHER_DAY = "2026-03-01", "2026-03-02"
VALID_IDS = [285, 603, 19995, 49026, 49529, 206647, 380097, 900004]  # of the fixture dump
TOP_REASON = "id must be a positive integer TMDB id"


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def _resources(db: str) -> dict:
    return {"warehouse": WarehouseResource(database_url=db), "tmdb": TMDBResource()}


def _downstream():
    """A stand-in for dbt: a partitioned child of tmdb_titles that says whether it was let through."""

    @dg.asset(partitions_def=PARTITIONS, deps=[TITLES.key])
    def after_titles() -> None:
        return None

    return after_titles


def _titles(db: str, day: str, config: dict, *, assets=None, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets or [TITLES],
        partition_key=day,
        resources=_resources(db),
        run_config={"ops": {"tmdb_titles": {"config": config}}},
        raise_on_error=False,
        instance=instance,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _titles_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()
             if e.asset_key == TITLES.key]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _flood(tmp_path: Path) -> Path:
    """The fixture dump (8 valid rows, 5 invalid) plus 9 rows whose id is negative: 14 of 22 rejected."""
    lines = (FIXTURES / "tmdb_5000_movies_sample.csv").read_text(encoding="utf-8").splitlines()
    bad = [f"0,[],,{-i},[],en,Bad {i},x,1.0,[],[],2020-01-01,0,90,[],Released,,Bad {i},5.0,10" for i in range(1, 10)]
    dump = tmp_path / "dump.csv"
    dump.write_text("\n".join(lines + bad) + "\n", encoding="utf-8")
    return dump


def _db_state(db: str) -> dict:
    with connect(db) as conn:
        return {
            "raw": [r[0] for r in conn.execute("SELECT id FROM raw.tmdb_titles ORDER BY id")],
            "held": [r[0] for r in conn.execute("SELECT id FROM raw.tmdb_held_titles ORDER BY id")],
            "batches": conn.execute("SELECT batch_id, status, records_read, loaded, held, quarantined "
                                    "FROM raw.tmdb_batches ORDER BY batch_id").fetchall(),
            "rejects": conn.execute("SELECT count(*) FROM raw.tmdb_rejects").fetchone()[0],
        }


# -- the warehouse gate ------------------------------------------------------------------
def test_schema_contract_passes_on_a_migrated_warehouse(fresh_db):
    result = dg.materialize(
        [warehouse_schema, warehouse_schema_matches_contract, tmdb_genres],
        resources=_resources(fresh_db),
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
        resources=_resources(fresh_db),
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    missing = evaluation.metadata["missing"].value
    assert "column:vectors.content_vectors.title:text" in missing
    assert "tmdb_genres" not in _materialized(result)  # the blocking gate held
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM raw.tmdb_genres").fetchone()[0] == 0


# -- a reject flood is held ---------------------------------------------------------------
def test_a_reject_flood_is_held_out_of_raw_and_the_gate_says_why(fresh_db, tmp_path):
    dump = _flood(tmp_path)
    downstream = _downstream()
    result = _titles(fresh_db, DAY, {"source": "csv_dump", "path": str(dump)}, assets=[TITLES, downstream])

    checks = _checks(result)
    gate = checks[REJECT_RATIO_CHECK]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    assert gate.partition == DAY  # the check result belongs to the day it judged
    assert gate.description.startswith("Batch 1 held: 14 of 22 records rejected (63.6%; limit 5.0%) on 2026-03-01")
    assert f"top reason: id: {TOP_REASON}" in gate.description and "(9×)" in gate.description
    assert "release_batch: 1" in gate.description
    reasons = gate.metadata["top_reasons"].value
    assert reasons.splitlines()[0] == "| field | reason | count |"
    assert reasons.splitlines()[2].startswith(f"| id | {TOP_REASON}") and reasons.splitlines()[2].endswith("| 9 |")
    examples = gate.metadata["examples"].value
    assert "vote_average" in examples and "dump.csv:line" in examples
    assert gate.metadata["by_field"].value["id"] == 9
    assert checks[NEW_DATA_CHECK].passed and checks[NEW_DATA_CHECK].severity == dg.AssetCheckSeverity.WARN
    assert {c.partition for c in checks.values()} == {DAY}
    assert "after_titles" not in _materialized(result)  # the gate held downstream back

    meta = _titles_metadata(result)
    assert (meta["batch_id"], meta["batch_status"], meta["records_read"]) == (1, "held", 22)
    assert (meta["loaded"], meta["held"], meta["quarantined"], meta["skipped_missing"]) == (0, 8, 14, 0)
    assert meta["count_identity"] == ("read 22 = loaded 0 (0 new, 0 changed, 0 unchanged) + held 8 "
                                      "+ quarantined 14 + skipped 0 (404) + duplicates 0")
    assert meta["file"] == "dump.csv" and len(meta["file_sha256"]) == 64
    state = _db_state(fresh_db)
    assert state["raw"] == [] and state["held"] == VALID_IDS  # the batch's valid rows wait, out of raw
    assert state["batches"] == [(1, "held", 22, 0, 8, 14)] and state["rejects"] == 14


def test_a_rerun_of_the_held_file_holds_nothing_twice_and_accept_rejects_lets_it_in(fresh_db, tmp_path):
    dump = _flood(tmp_path)
    config = {"source": "csv_dump", "path": str(dump)}
    _titles(fresh_db, DAY, config)
    held = _db_state(fresh_db)
    again = _titles(fresh_db, DAY, config)
    assert not _checks(again)[REJECT_RATIO_CHECK].passed
    assert "still held, not held twice" in _checks(again)[REJECT_RATIO_CHECK].description
    assert _db_state(fresh_db) == held  # one batch, one held copy

    downstream = _downstream()
    accepted = _titles(fresh_db, DAY, {**config, "accept_rejects": True}, assets=[TITLES, downstream])
    assert accepted.success
    gate = _checks(accepted)[REJECT_RATIO_CHECK]
    assert gate.passed and gate.description.startswith(
        "Accepted by the operator (accept_rejects: true): 14 of 22 records rejected")
    assert "after_titles" in _materialized(accepted)
    state = _db_state(fresh_db)
    assert state["raw"] == VALID_IDS and state["held"] == []
    assert state["batches"] == [(1, "released", 22, 8, 0, 14)] and state["rejects"] == 14


def test_release_batch_merges_the_held_rows_on_the_batch_s_own_day(fresh_db, tmp_path):
    _titles(fresh_db, DAY, {"source": "csv_dump", "path": str(_flood(tmp_path))})

    wrong_day = _titles(fresh_db, OTHER_DAY, {"release_batch": 1})
    failure = wrong_day.failure_data_for_node("tmdb_titles")
    assert "batch 1 belongs to partition 2026-03-01, not 2026-03-02" in failure.user_failure_data.description
    assert _db_state(fresh_db)["raw"] == []

    released = _titles(fresh_db, DAY, {"release_batch": 1})
    assert released.success
    gate = _checks(released)[REJECT_RATIO_CHECK]
    assert gate.passed and gate.description.startswith("Accepted by the operator (release_batch: 1): 14 of 22")
    assert "the 14 rejects stay in raw.tmdb_rejects" in gate.description
    meta = _titles_metadata(released)
    assert (meta["batch_status"], meta["loaded"], meta["held"], meta["rows_inserted"]) == ("released", 8, 0, 8)
    assert meta["count_identity"].startswith("read 22 = loaded 8 (8 new, 0 changed, 0 unchanged) + held 0")
    state = _db_state(fresh_db)
    assert state["raw"] == VALID_IDS and state["held"] == [] and state["rejects"] == 14

    twice = _titles(fresh_db, DAY, {"release_batch": 1})
    assert "is released" in twice.failure_data_for_node("tmdb_titles").user_failure_data.description


# -- deterministic failures fail once ----------------------------------------------------------
def _one_attempt_failure(db: str, config: dict) -> dg.Failure:
    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(dg.Failure) as info:
            dg.materialize([TITLES], partition_key=DAY, resources=_resources(db), instance=instance,
                           run_config={"ops": {"tmdb_titles": {"config": config}}})
        [run] = instance.get_runs()
        events = [e.dagster_event.event_type_value for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    assert "STEP_UP_FOR_RETRY" not in events and "STEP_RESTARTED" not in events
    assert events.count("STEP_START") == 1 and events.count("STEP_FAILURE") == 1
    return info.value


def test_a_wrong_path_fails_once_with_the_path_in_the_headline(fresh_db, tmp_path):
    missing = tmp_path / "no" / "tmdb_5000_movies.csv"
    failure = _one_attempt_failure(fresh_db, {"source": "csv_dump", "path": str(missing)})
    assert failure.allow_retries is False
    assert failure.description.startswith(f"tmdb_titles 2026-03-01: {missing} cannot be read: no such file")
    assert "fix `path` in the tmdb_titles run config" in failure.description


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"source": "csv_dump"}, ["'csv_dump' reads a file", "no `path`"]),
        ({"source": "kaggle"}, ["'kaggle'", "`source` in the tmdb_titles run config", "sample, csv_dump, export, api"]),
        ({"source": "api"}, ["'api' needs TMDB credentials", "TMDB_API_KEY"]),
        ({"source": "export", "path": "DIR"}, ["is a directory"]),
        ({"source": "csv_dump", "path": "NOT_A_DUMP"}, ["not a TMDB 5000 movies CSV", "vote_average"]),
        ({"source": "export", "path": "NOT_GZIP"}, ["not a gzip-compressed TMDB export"]),
        ({"max_reject_ratio": 5}, ["max_reject_ratio=5", "between 0 and 1"]),
        ({"release_batch": 1, "source": "sample"}, ["reads no source", "remove `source`"]),
        ({"release_batch": 77}, ["no batch 77"]),
    ],
)
def test_what_no_retry_can_fix_fails_once_naming_the_setting(fresh_db, tmp_path, config, words):
    not_a_dump = tmp_path / "other.csv"
    not_a_dump.write_text("id,name\n1,x\n")
    not_gzip = tmp_path / "movie_ids_01_15_2025.json.gz"
    not_gzip.write_text('{"id": 1, "original_title": "A"}\n')
    paths = {"DIR": str(tmp_path), "NOT_A_DUMP": str(not_a_dump), "NOT_GZIP": str(not_gzip)}
    if "path" in config:
        config = {**config, "path": paths[config["path"]]}
    failure = _one_attempt_failure(fresh_db, config)
    assert failure.allow_retries is False
    assert all(w in failure.description for w in words), failure.description


def test_a_lost_warehouse_is_retried_and_then_named(fresh_db):
    """Transient: the retry policy gets it (here without delay), and the last attempt says what it was."""
    quick = build_tmdb_titles(PARTITIONS, retry_policy=dg.RetryPolicy(max_retries=2, delay=0))
    result = dg.materialize(
        [quick], partition_key=DAY, raise_on_error=False,
        resources={"warehouse": WarehouseResource(database_url="postgresql://postgres@127.0.0.1:9/gateway"),
                   "tmdb": TMDBResource()},
    )
    events = [e.event_type_value for e in result.all_events]
    assert events.count("STEP_UP_FOR_RETRY") == 2 and events.count("STEP_RESTARTED") == 2
    failure = result.failure_data_for_node("tmdb_titles").user_failure_data
    assert failure.description.startswith("tmdb_titles 2026-03-01: still failing after 3 attempts with a "
                                          "transient error (WarehouseError: Cannot reach Postgres")


# -- empty or repeated days are flagged ----------------------------------------------------------
def test_a_day_that_only_resends_known_titles_warns_without_blocking(fresh_db):
    first = _titles(fresh_db, DAY, {"source": "sample"})
    assert first.success and _checks(first)[NEW_DATA_CHECK].passed
    assert _checks(first)[NEW_DATA_CHECK].description.startswith("2500 new and 0 changed titles on 2026-03-01")

    downstream = _downstream()
    backfilled = _titles(fresh_db, OTHER_DAY, {"source": "sample"}, assets=[TITLES, downstream])
    assert backfilled.success and "after_titles" in _materialized(backfilled)  # WARN does not block
    warn = _checks(backfilled)[NEW_DATA_CHECK]
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN and warn.partition == OTHER_DAY
    assert warn.description == ("0 new or changed rows on 2026-03-02: every title it loaded was already in raw "
                                "unchanged (read 2500: 2500 unchanged, 0 quarantined, 0 skipped as deleted, "
                                "0 duplicates)")
    assert _checks(backfilled)[REJECT_RATIO_CHECK].passed and _checks(backfilled)[PAYLOAD_SHAPE_CHECK].passed
    assert _titles_metadata(backfilled)["dagster/row_count"] == 0


def test_an_empty_day_warns_with_the_count(fresh_db, tmp_path):
    header_only = tmp_path / "empty.csv"
    header_only.write_text((FIXTURES / "tmdb_5000_movies_sample.csv").read_text().splitlines()[0] + "\n")
    result = _titles(fresh_db, DAY, {"source": "csv_dump", "path": str(header_only)})
    assert result.success
    warn = _checks(result)[NEW_DATA_CHECK]
    assert not warn.passed
    assert warn.description == "The source sent 0 records for 2026-03-01: an empty day (source csv_dump)"
    assert _titles_metadata(result)["count_identity"].startswith("read 0 = loaded 0")


def test_rerunning_a_loaded_day_through_dagster_changes_nothing(fresh_db, tmp_path):
    dump = tmp_path / "good.csv"
    shutil.copy(FIXTURES / "tmdb_5000_movies_sample.csv", dump)
    config = {"source": "csv_dump", "path": str(dump), "max_reject_ratio": 0.5}
    first = _titles(fresh_db, DAY, config)
    assert first.success
    with connect(fresh_db) as conn:
        before = conn.execute("SELECT id, fetched_at FROM raw.tmdb_titles ORDER BY id").fetchall()
    state = _db_state(fresh_db)
    # the same file: matched to its batch without reading it (tests/integration/tmdb/test_unchanged_file.py)
    second = _titles(fresh_db, DAY, config)
    assert second.success
    assert (_titles_metadata(second)["batch_action"], _titles_metadata(second)["records_read"]) == ("unchanged_file", 0)
    assert not _checks(second)[NEW_DATA_CHECK].passed
    # read in full on request: every row compared with raw, none written
    third = _titles(fresh_db, DAY, {**config, "reread": True})
    assert third.success
    meta = _titles_metadata(third)
    assert (meta["batch_id"], meta["batch_action"]) == (1, "reloaded")
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_unchanged"]) == (0, 0, 8)
    repeat = _checks(third)[NEW_DATA_CHECK]  # a rerun brings nothing new: said, not hidden
    assert not repeat.passed and "this run repeated batch 1, loaded " in repeat.description
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT id, fetched_at FROM raw.tmdb_titles ORDER BY id").fetchall() == before
    assert _db_state(fresh_db) == state


# -- what the asset says it is -------------------------------------------------------------------
@pytest.mark.parametrize(("asset", "schema", "table"), [
    (TITLES, TITLES_SCHEMA, "raw.tmdb_titles"),
    (tmdb_genres, GENRES_SCHEMA, "raw.tmdb_genres"),
])
def test_column_schema_matches_the_warehouse(fresh_db, asset, schema, table):
    metadata = asset.specs_by_key[asset.key].metadata
    assert metadata["dagster/table_name"] == table and metadata["dagster/column_schema"] == schema
    schema_name, name = table.split(".")
    with connect(fresh_db) as conn:
        actual = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (f"{schema_name}.{name}",),
        ).fetchall()
    declared = [(c.name, c.type, not c.constraints.nullable) for c in schema.columns]
    assert declared == actual
    assert all(c.description for c in schema.columns)


# -- what dbt sees ------------------------------------------------------------------------------
def test_a_held_batch_does_not_reach_dim_content_until_released(fresh_db, tmp_path):
    """Through the real dbt models: the held rows are invisible to analytics, then arrive on release."""
    from gateway_pipelines import settings
    from gateway_pipelines.defs.analytics.assets import dbt_model_assets
    from gateway_pipelines.defs.resources import dbt_executable
    from gateway_pipelines.lib.analytics.resource import DbtWarehouseResource

    warehouse = WarehouseResource(database_url=fresh_db, gateway_home=str(settings.gateway_home()))
    dbt = DbtWarehouseResource(project_dir=str(settings.DBT_DIR), dbt_executable=dbt_executable(), warehouse=warehouse)
    incremental, tables = dbt_model_assets(PARTITIONS)

    def dbt_build() -> list[str]:
        dg.materialize([incremental], partition_key=DAY, resources={"dbt": dbt, "warehouse": warehouse})
        dg.materialize([tables], selection=[dg.AssetKey("dim_content")], resources={"dbt": dbt, "warehouse": warehouse})
        with connect(fresh_db) as conn:
            return [r[0] for r in conn.execute("SELECT content_key FROM analytics.dim_content ORDER BY tmdb_id")]

    dg.materialize([tmdb_genres], resources=_resources(fresh_db))
    _titles(fresh_db, DAY, {"source": "csv_dump", "path": str(_flood(tmp_path))})
    assert dbt_build() == []  # the held batch's 8 valid titles did not reach analytics

    assert _titles(fresh_db, DAY, {"release_batch": 1}).success
    assert dbt_build() == [f"movie-{i}" for i in VALID_IDS]
