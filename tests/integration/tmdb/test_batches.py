"""The batch ledger on a real warehouse: a failed gate holds rows back, release lets them in, counts add up."""

from datetime import date
from pathlib import Path

import psycopg
import pytest

from gateway_pipelines.lib.tmdb.batches import BatchError, get_batch, list_batches
from gateway_pipelines.lib.tmdb.landing import file_sha256
from gateway_pipelines.lib.tmdb.raw_store import ingest, release_batch
from gateway_pipelines.lib.tmdb.records import Reject, SourceRecord
from gateway_pipelines.lib.tmdb.sources import CsvDumpSource, SampleSource

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tmdb"
DUMP = FIXTURES / "tmdb_5000_movies_sample.csv"  # 13 rows, 5 of them invalid: a reject flood at 5%
VALID_IDS = [285, 603, 19995, 49026, 49529, 206647, 380097, 900004]
DAY = date(2026, 3, 1)


def _load_dump(conn, **kw):
    report = ingest(conn, CsvDumpSource(DUMP).records(DAY), source="csv_dump", partition=DAY,
                    file_name=DUMP.name, file_sha256=file_sha256(DUMP), **kw)
    conn.commit()
    return report


def _ids(conn, table: str, batch_id: int | None = None) -> list[int]:
    if table == "raw":
        return [r[0] for r in conn.execute("SELECT id FROM raw.tmdb_titles ORDER BY id")]
    return [r[0] for r in conn.execute("SELECT id FROM raw.tmdb_held_titles WHERE batch_id = %s ORDER BY id",
                                       (batch_id,))]


def _everything(conn) -> dict:
    return {
        "raw": conn.execute("SELECT media_type, id, content_hash, partition_date, fetched_at FROM raw.tmdb_titles "
                            "ORDER BY 1, 2").fetchall(),
        "held": conn.execute("SELECT batch_id, media_type, id, content_hash FROM raw.tmdb_held_titles "
                             "ORDER BY 1, 2, 3").fetchall(),
        "rejects": conn.execute("SELECT reject_id, record_hash, field FROM raw.tmdb_rejects ORDER BY 1").fetchall(),
        "batches": conn.execute("SELECT * FROM raw.tmdb_batches ORDER BY batch_id").fetchall(),
    }


def test_a_flood_is_held_out_of_raw_and_a_release_lets_exactly_it_in(conn):
    report = _load_dump(conn)
    batch = report.batch
    assert report.action == "held" and batch.status == "held"
    assert _ids(conn, "raw") == []  # not one valid row of the batch reached raw (nor dbt)
    assert _ids(conn, "held", batch.batch_id) == VALID_IDS
    assert batch.counts.read == 13 and batch.counts.held == 8 and batch.counts.quarantined == 5
    assert batch.counts.adds_up and report.counts().adds_up
    assert batch.file_name == DUMP.name and batch.file_sha256 == file_sha256(DUMP) == batch.batch_key
    assert conn.execute("SELECT count(*) FROM raw.tmdb_rejects").fetchone()[0] == 5

    released = release_batch(conn, batch.batch_id, run_id="run-42")
    conn.commit()
    after = released.batch
    assert (released.inserted, released.updated, released.unchanged) == (8, 0, 0)
    assert after.status == "released" and after.released_at is not None and after.released_run_id == "run-42"
    assert after.accepted_rejects and after.counts.held == 0 and after.counts.loaded == 8 and after.counts.adds_up
    assert _ids(conn, "raw") == VALID_IDS and _ids(conn, "held", batch.batch_id) == []
    assert conn.execute("SELECT count(*) FROM raw.tmdb_rejects").fetchone()[0] == 5  # rejects stay quarantined
    sources = conn.execute("SELECT DISTINCT source, partition_date FROM raw.tmdb_titles").fetchall()
    assert sources == [("csv_dump", DAY)]


def test_the_same_held_file_again_is_the_same_batch_not_a_second_copy(conn):
    first = _load_dump(conn)
    before = _everything(conn)
    second = _load_dump(conn)
    assert second.action == "still_held" and second.batch_id == first.batch_id
    assert _everything(conn) == before  # no second ledger row, no second held copy, no new reject


def test_rerunning_the_file_with_accept_rejects_releases_the_held_batch(conn):
    held = _load_dump(conn)
    accepted = _load_dump(conn, accept_rejects=True)
    batch = accepted.batch
    assert accepted.action == "released" and batch.batch_id == held.batch_id
    assert batch.status == "released" and batch.accepted_rejects and batch.counts.adds_up
    assert _ids(conn, "raw") == VALID_IDS and _ids(conn, "held", batch.batch_id) == []
    assert len(list_batches(conn)) == 1


def test_accepting_on_the_first_load_loads_and_says_so(conn):
    report = _load_dump(conn, accept_rejects=True)
    assert report.action == "loaded" and report.batch.status == "loaded" and report.batch.accepted_rejects
    assert _ids(conn, "raw") == VALID_IDS


def test_rerunning_a_loaded_partition_changes_nothing(conn):
    source = SampleSource(n_movies=60, n_tv=20)
    first = ingest(conn, source.records(DAY), source="sample", partition=DAY)
    conn.commit()
    before = _everything(conn)
    again = ingest(conn, source.records(DAY), source="sample", partition=DAY)
    conn.commit()
    assert first.action == "loaded" and again.action == "reloaded" and again.batch_id == first.batch_id
    assert (again.inserted, again.updated, again.unchanged, again.held) == (0, 0, 80, 0)
    assert again.counts().adds_up
    assert _everything(conn) == before  # raw, rejects, holding table and ledger all untouched


def test_count_identity_holds_with_duplicates_rejects_and_deleted_titles(conn):
    records = list(SampleSource(n_movies=10, n_tv=0).records(DAY))
    dupe = SourceRecord("movie", dict(records[0].record, overview="a later copy"), "x:11")
    bad = SourceRecord("movie", dict(records[1].record, id=-5), "x:12")
    gone = Reject(source="api", partition=DAY.isoformat(), record={"id": 777, "media_type": "movie"}, field="id",
                  reason="TMDB answered 404 for /movie/777", kind="missing")
    report = ingest(conn, records + [dupe, bad], source="api", partition=DAY, missing=[gone], max_reject_ratio=0.5)
    conn.commit()
    c = report.counts()
    assert (c.read, c.loaded, c.held, c.quarantined, c.skipped, c.duplicates) == (13, 10, 0, 1, 1, 1)
    assert c.adds_up and report.batch.counts == c
    stored = conn.execute("SELECT records_read, loaded, held, quarantined, skipped_missing, duplicates "
                          "FROM raw.tmdb_batches").fetchone()
    assert stored == (13, 10, 0, 1, 1, 1)


def test_the_ledger_refuses_counts_that_do_not_add_up(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="tmdb_batches_counts_add_up"):
        conn.execute(
            "INSERT INTO raw.tmdb_batches (partition_date, source, content_sha256, batch_key, status, records_read, "
            "inserted, updated, unchanged, held, quarantined, skipped_missing, duplicates, reject_ratio, "
            "max_reject_ratio) VALUES ('2026-03-01', 'sample', 'x', 'x', 'loaded', 10, 5, 0, 0, 0, 0, 0, 0, 0, 0.05)"
        )


def test_release_refuses_what_is_not_held(conn):
    with pytest.raises(BatchError, match="no batch 999"):
        release_batch(conn, 999)
    conn.rollback()
    loaded = ingest(conn, SampleSource(n_movies=5, n_tv=0).records(DAY), source="sample", partition=DAY)
    conn.commit()
    with pytest.raises(BatchError, match=f"batch {loaded.batch_id} .* is loaded"):
        release_batch(conn, loaded.batch_id)


def test_list_batches_filters_by_status_and_day(conn):
    held = _load_dump(conn)
    ingest(conn, SampleSource(n_movies=5, n_tv=0).records(DAY), source="sample", partition=date(2026, 3, 2))
    conn.commit()
    assert [b.batch_id for b in list_batches(conn, status="held")] == [held.batch_id]
    assert [b.status for b in list_batches(conn)] == ["loaded", "held"]  # newest first
    assert [b.source for b in list_batches(conn, partition=date(2026, 3, 2))] == ["sample"]
    assert get_batch(conn, held.batch_id).top_reason is not None
    with pytest.raises(BatchError, match="loaded, held, released"):
        list_batches(conn, status="stuck")
