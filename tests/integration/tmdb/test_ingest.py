"""TMDB ingestion into a real warehouse: idempotent partitions, quarantine, atomic failure, the API path."""

from datetime import date
from pathlib import Path

import pytest

from gateway_pipelines.lib.tmdb.client import TMDBClient
from gateway_pipelines.lib.tmdb.raw_store import ingest
from gateway_pipelines.lib.tmdb.records import SourceRecord
from gateway_pipelines.lib.tmdb.sources import ApiSource, CsvDumpSource, SampleSource
from gateway_pipelines.lib.warehouse import connect
from tests.fakes.tmdb_server import FakeTMDB

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tmdb"
DUMP = FIXTURES / "tmdb_5000_movies_sample.csv"
DAY = date(2026, 3, 1)


def _snapshot(conn):
    return conn.execute(
        "SELECT media_type, id, content_hash, partition_date, fetched_at FROM raw.tmdb_titles ORDER BY 1, 2"
    ).fetchall()


def test_sample_partition_rerun_writes_nothing(conn):
    source = SampleSource(n_movies=300, n_tv=100)
    first = ingest(conn, source.records(DAY), source="sample", partition=DAY)
    conn.commit()
    before = _snapshot(conn)
    second = ingest(conn, source.records(DAY), source="sample", partition=DAY)
    conn.commit()
    assert (first.inserted, first.updated, first.rejected) == (400, 0, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 400)
    assert _snapshot(conn) == before  # same rows, same fetched_at: nothing was touched


def test_changed_content_updates_only_that_title(conn):
    records = list(SampleSource(n_movies=20, n_tv=0).records(DAY))
    ingest(conn, records, source="sample", partition=DAY)
    conn.commit()
    changed = dict(records[3].record, overview="A completely rewritten overview about lighthouse keepers.")
    records[3] = SourceRecord(records[3].media_type, changed, records[3].ref)
    report = ingest(conn, records, source="sample", partition=date(2026, 3, 2))
    conn.commit()
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 19)
    moved = conn.execute("SELECT id FROM raw.tmdb_titles WHERE partition_date = '2026-03-02'").fetchall()
    assert moved == [(changed["id"],)]


def test_duplicates_in_a_batch_keep_the_latest(conn):
    base = next(iter(SampleSource(n_movies=1, n_tv=0).records(DAY)))
    older = SourceRecord("movie", dict(base.record, overview="first version"), "a:1")
    newer = SourceRecord("movie", dict(base.record, overview="second version"), "a:2")
    report = ingest(conn, [older, newer], source="sample", partition=DAY)
    conn.commit()
    assert report.duplicates == 1 and report.inserted == 1
    stored = conn.execute("SELECT payload->>'overview' FROM raw.tmdb_titles").fetchone()[0]
    assert stored == "second version"


def test_csv_dump_rows_are_loaded_or_quarantined_with_a_reason(conn):
    rows_in_file = sum(1 for _ in DUMP.open(encoding="utf-8")) - 1
    # the fixture is 5 rejects in 13 rows on purpose: a limit above that lets its valid rows through
    report = ingest(conn, CsvDumpSource(DUMP).records(DAY), source="csv_dump", partition=DAY, max_reject_ratio=0.5)
    conn.commit()
    loaded = conn.execute("SELECT count(*) FROM raw.tmdb_titles").fetchone()[0]
    rejects = conn.execute("SELECT field, reason, record FROM raw.tmdb_rejects ORDER BY reject_id").fetchall()
    assert report.records_in == rows_in_file
    assert loaded + len(rejects) == rows_in_file
    assert loaded >= 5 and len(rejects) >= 3
    assert all(field and reason and record for field, reason, record in rejects)
    fields = {field for field, _, _ in rejects}
    assert "vote_average" in fields and "genres" in fields
    # real titles made it, typed
    avatar = conn.execute("SELECT payload FROM raw.tmdb_titles WHERE id = 19995").fetchone()[0]
    assert avatar["title"] == "Avatar" and isinstance(avatar["genres"], list)


def test_quarantine_is_idempotent(conn):
    for _ in range(2):
        ingest(conn, CsvDumpSource(DUMP).records(DAY), source="csv_dump", partition=DAY)
        conn.commit()
    counts = conn.execute("SELECT count(*), count(DISTINCT (record_hash, field)) FROM raw.tmdb_rejects").fetchone()
    assert counts[0] == counts[1] > 0


def test_a_failed_load_leaves_the_previous_table(fresh_db):
    with connect(fresh_db) as conn:
        ingest(conn, SampleSource(n_movies=50, n_tv=0).records(DAY), source="sample", partition=DAY)
        conn.commit()
        before = _snapshot(conn)

        def explode_midway():
            for i, record in enumerate(SampleSource(n_movies=80, n_tv=10, seed=99).records(DAY)):
                if i == 60:
                    raise ConnectionError("source went away mid-stream")
                yield record

        with pytest.raises(ConnectionError):
            ingest(conn, explode_midway(), source="sample", partition=date(2026, 3, 5))
        conn.rollback()
        assert _snapshot(conn) == before


def test_api_source_through_a_tmdb_speaking_server(conn):
    """Changes -> details with appends; a 404 is 'missing', a 429 and a 500 are retried; no duplicates."""
    with FakeTMDB() as tmdb:
        tmdb.set_changes("movie", [550, 603, 999999])  # 999999 is unknown: TMDB answers 404 / status 34
        tmdb.add_title("movie", 603, {"title": "The Matrix"})
        tmdb.set_changes("tv", [])
        tmdb.fail_next(429, headers={"Retry-After": "1"}, path="/3/movie/550")
        tmdb.fail_next(500, path="/3/movie/603")
        sleeps = []
        client = TMDBClient(api_key=tmdb.api_key, base_url=tmdb.base_url, sleep=sleeps.append)
        source = ApiSource(client)
        report = ingest(conn, source.records(DAY), source="api", partition=DAY, missing=source.missing)
        conn.commit()
        again = ingest(conn, ApiSource(client).records(DAY), source="api", partition=DAY)
        conn.commit()
    ids = [r[0] for r in conn.execute("SELECT id FROM raw.tmdb_titles ORDER BY id")]
    assert ids == [550, 603]
    assert report.inserted == 2 and report.missing == 1
    missing = conn.execute("SELECT kind, field, reason FROM raw.tmdb_rejects").fetchall()
    assert missing == [("missing", "id", missing[0][2])] and "999999" in missing[0][2]
    assert client.stats.throttled == 1 and client.stats.retries >= 2
    assert any(s >= 1 for s in sleeps)  # Retry-After honoured
    assert again.inserted == 0 and again.updated == 0
    payload = conn.execute("SELECT payload FROM raw.tmdb_titles WHERE id = 603").fetchone()[0]
    assert payload["title"] == "The Matrix" and "credits" in payload and "watch/providers" in payload
