"""A rerun of a file raw already holds is recorded against its batch without reading the file, and
everything that could make a read matter (other bytes, a raw changed since, another loader,
deleted rejects, `reread: true`) reads it in full. Through the real asset on a real warehouse."""

import shutil
from pathlib import Path

import dagster as dg

from gateway_pipelines.defs.tmdb.assets import (
    NEW_DATA_CHECK,
    PAYLOAD_SHAPE_CHECK,
    REJECT_RATIO_CHECK,
    build_tmdb_titles,
)
from gateway_pipelines.defs.tmdb.partitions import daily_partitions
from gateway_pipelines.lib.tmdb.resource import TMDBResource
from gateway_pipelines.lib.tmdb.unchanged import LOADER_VERSION
from gateway_pipelines.lib.warehouse import WarehouseResource, connect

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "tmdb" / "tmdb_5000_movies_sample.csv"  # 8 valid, 5 not
TITLES = build_tmdb_titles(daily_partitions("2026-01-01"))
DAY, OTHER_DAY = "2026-03-01", "2026-03-05"
AVATAR = 19995


def _dump(tmp_path: Path, name: str = "dump.csv", overview_century: str = "22nd") -> Path:
    path = tmp_path / name
    text = FIXTURE.read_text(encoding="utf-8")
    assert "In the 22nd century" in text
    path.write_text(text.replace("In the 22nd century", f"In the {overview_century} century"), encoding="utf-8")
    return path


def _run(db: str, path: Path, day: str = DAY, *, ok: bool = True, **config) -> dg.ExecuteInProcessResult:
    """One materialisation; `ok`: it must succeed (a failed blocking gate fails the step, by design)."""
    result = dg.materialize(
        [TITLES], partition_key=day, raise_on_error=False,
        resources={"warehouse": WarehouseResource(database_url=db), "tmdb": TMDBResource()},
        run_config={"ops": {"tmdb_titles": {"config": {"source": "csv_dump", "path": str(path),
                                                       "max_reject_ratio": 0.5, **config}}}},
    )
    assert result.success or not ok, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result


def _meta(result: dg.ExecuteInProcessResult) -> dict:
    [mat] = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _state(db: str) -> dict:
    """Every row of raw and of the ledger, with its row version: a rewrite shows even with equal values."""
    with connect(db) as conn:
        return {
            "raw": conn.execute("SELECT id, content_hash, partition_date, fetched_at, xmin::text, ctid::text "
                                "FROM raw.tmdb_titles ORDER BY id").fetchall(),
            "rejects": conn.execute("SELECT reject_id, record_hash, xmin::text FROM raw.tmdb_rejects "
                                    "ORDER BY 1").fetchall(),
            "batches": conn.execute("SELECT *, xmin::text FROM raw.tmdb_batches ORDER BY batch_id").fetchall(),
        }


def test_an_unchanged_file_is_not_read_again_and_the_checks_still_tell(fresh_db, tmp_path):
    dump = _dump(tmp_path)
    first = _meta(_run(fresh_db, dump))
    assert (first["batch_action"], first["records_read"], first["rows_inserted"]) == ("loaded", 13, 8)
    assert first["file_unchanged"] is False and first["file_check"].startswith("no batch of this file")
    assert first["loader_version"] == LOADER_VERSION
    before = _state(fresh_db)

    again = _run(fresh_db, dump)
    meta = _meta(again)
    assert (meta["batch_action"], meta["batch_id"], meta["matched_batch_id"]) == ("unchanged_file", 1, 1)
    assert (meta["records_read"], meta["loaded"], meta["quarantined"], meta["held"]) == (0, 0, 0, 0)
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_unchanged"]) == (0, 0, 0)
    assert meta["count_identity"] == ("read 0 = loaded 0 (0 new, 0 changed, 0 unchanged) + held 0 "
                                      "+ quarantined 0 + skipped 0 (404) + duplicates 0")
    assert meta["file_unchanged"] is True and "batch 1's" in meta["file_check"]
    assert "reading it again would change nothing" in meta["file_check"]
    assert meta["dagster/row_count"] == 8  # the partition still holds the batch's titles
    assert "titles_per_second" not in meta  # nothing was streamed

    checks = _checks(again)
    warn = checks[NEW_DATA_CHECK]  # the designed WARN of a rerun, saying what happened
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert "byte-identical to batch 1" in warn.description and "not read again" in warn.description
    gate = checks[REJECT_RATIO_CHECK]  # judged on the matched batch's figures
    assert gate.passed and gate.description.startswith("Batch 1: 5 of 13 records rejected (38.5%; limit 50.0%)")
    assert "did not read it" in gate.description
    assert (gate.metadata["rejected"].value, gate.metadata["judged"].value) == (5, 13)
    assert checks[PAYLOAD_SHAPE_CHECK].passed
    assert _state(fresh_db) == before  # raw, rejects and ledger: not one row version touched

    # the gate still decides: a stricter limit fails it, as a full rerun of the loaded file would
    strict = _checks(_run(fresh_db, dump, ok=False, max_reject_ratio=0.1))[REJECT_RATIO_CHECK]
    assert not strict.passed and strict.description.startswith("Batch 1 was already loaded before this run")


def test_a_changed_file_is_read_and_its_change_loaded(fresh_db, tmp_path):
    _run(fresh_db, _dump(tmp_path))
    changed = _meta(_run(fresh_db, _dump(tmp_path, "dump2.csv", overview_century="23rd")))
    assert (changed["batch_action"], changed["batch_id"], changed["records_read"]) == ("loaded", 2, 13)
    assert (changed["rows_updated"], changed["rows_unchanged"]) == (1, 7)
    assert changed["file_unchanged"] is False
    with connect(fresh_db) as conn:
        overview = conn.execute("SELECT payload->>'overview' FROM raw.tmdb_titles WHERE id = %s", (AVATAR,)).fetchone()
    assert overview[0].startswith("In the 23rd century")


def test_a_file_is_read_again_when_raw_changed_since_its_batch(fresh_db, tmp_path):
    dump = _dump(tmp_path)
    _run(fresh_db, dump)
    # another day's file overwrites one of its titles: re-reading the first file must put it back
    other = _meta(_run(fresh_db, _dump(tmp_path, "other.csv", overview_century="31st"), day=OTHER_DAY))
    assert (other["batch_action"], other["rows_updated"]) == ("loaded", 1)

    again = _meta(_run(fresh_db, dump))
    assert (again["batch_action"], again["records_read"]) == ("reloaded", 13)
    assert again["file_unchanged"] is False and "changed since batch 1 was applied" in again["file_check"]
    assert again["rows_updated"] == 1
    with connect(fresh_db) as conn:
        row = conn.execute("SELECT payload->>'overview', partition_date::text FROM raw.tmdb_titles WHERE id = %s",
                           (AVATAR,)).fetchone()
    assert row[0].startswith("In the 22nd century") and row[1] == DAY

    # that full read recorded the state it left, so the next rerun is a no-op again
    assert _meta(_run(fresh_db, dump))["batch_action"] == "unchanged_file"


def test_a_rewrite_of_a_raw_row_with_the_same_values_counts_as_a_change(fresh_db, tmp_path):
    dump = _dump(tmp_path)
    _run(fresh_db, dump)
    with connect(fresh_db) as conn:
        conn.execute("UPDATE raw.tmdb_titles SET payload = payload WHERE id = %s", (AVATAR,))
        conn.commit()
    assert _meta(_run(fresh_db, dump))["batch_action"] == "reloaded"


def test_reread_true_reads_the_file_in_full(fresh_db, tmp_path):
    dump = _dump(tmp_path)
    _run(fresh_db, dump)
    meta = _meta(_run(fresh_db, dump, reread=True))
    assert (meta["batch_action"], meta["records_read"], meta["rows_unchanged"]) == ("reloaded", 13, 8)
    assert meta["file_check"].startswith("reread: true")


def test_a_batch_counted_by_another_loader_is_read_again_then_adopted(fresh_db, tmp_path):
    dump = _dump(tmp_path)
    _run(fresh_db, dump)
    with connect(fresh_db) as conn:
        conn.execute("UPDATE raw.tmdb_batches SET loader_version = 'older-loader'")
        conn.commit()
    meta = _meta(_run(fresh_db, dump))
    assert (meta["batch_action"], meta["records_read"]) == ("reloaded", 13)
    assert "counted by older-loader" in meta["file_check"]
    with connect(fresh_db) as conn:  # this loader read the same content: the batch's counts are its own now
        assert conn.execute("SELECT loader_version FROM raw.tmdb_batches").fetchone()[0] == LOADER_VERSION
    assert _meta(_run(fresh_db, dump))["batch_action"] == "unchanged_file"


def test_deleted_rejects_make_the_file_be_read_and_quarantined_again(fresh_db, tmp_path):
    dump = _dump(tmp_path)
    _run(fresh_db, dump)
    with connect(fresh_db) as conn:
        conn.execute("DELETE FROM raw.tmdb_rejects WHERE reject_id = (SELECT min(reject_id) FROM raw.tmdb_rejects)")
        conn.commit()
    meta = _meta(_run(fresh_db, dump))
    assert meta["batch_action"] == "reloaded"
    with connect(fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM raw.tmdb_rejects").fetchone()[0] == 5


def test_a_held_file_is_judged_again_not_matched(fresh_db, tmp_path):
    dump = _dump(tmp_path)
    held = _meta(_run(fresh_db, dump, ok=False, max_reject_ratio=0.05))
    assert held["batch_action"] == "held"
    again = _meta(_run(fresh_db, dump, ok=False, max_reject_ratio=0.05))
    assert (again["batch_action"], again["records_read"]) == ("still_held", 13)
    assert "is held" in again["file_check"]


def test_the_copy_of_a_loaded_file_under_another_name_is_the_same_batch(fresh_db, tmp_path):
    """The batch is the bytes, not the name: a copy is matched, as a full read would find it reloaded."""
    dump = _dump(tmp_path)
    _run(fresh_db, dump)
    copy = tmp_path / "renamed.csv"
    shutil.copy(dump, copy)
    meta = _meta(_run(fresh_db, copy))
    assert (meta["batch_action"], meta["matched_batch_id"]) == ("unchanged_file", 1)
