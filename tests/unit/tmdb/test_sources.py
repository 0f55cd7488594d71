"""The four title sources behind one interface."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import psycopg
import pytest

from gateway_pipelines.lib.tmdb import (
    SOURCE_NAMES,
    ApiSource,
    CsvDumpSource,
    ExportSource,
    Reject,
    SampleSource,
    TMDBClient,
    TMDBConfigError,
    TMDBError,
    ValidTitle,
    make_source,
    validate_record,
)
from gateway_pipelines.lib.tmdb.records import SourceError
from gateway_pipelines.lib.tmdb.sources import deterministic_reason, is_transient
from tests.fakes.tmdb_server import FakeTMDB

DAY = date(2024, 5, 1)
MOVIES = "movie_ids_01_15_2025.json.gz"


def validate_all(source, partition: date = DAY) -> list[ValidTitle | Reject]:
    return [validate_record(r, source=source.name, partition=partition.isoformat())
            for r in source.records(partition)]


def test_sample_source() -> None:
    src = SampleSource(seed=1, n_movies=20, n_tv=5)
    out = validate_all(src)
    assert src.name == "sample" and len(out) == 25 and all(isinstance(r, ValidTitle) for r in out)
    assert src.missing == []


def test_csv_source(fixtures_dir: Path) -> None:
    src = CsvDumpSource(fixtures_dir / "tmdb_5000_movies_sample.csv")
    out = validate_all(src)
    assert src.name == "csv_dump" and len(out) == 13
    assert sum(isinstance(r, Reject) for r in out) == 5


def test_export_source_without_client(fixtures_dir: Path) -> None:
    src = ExportSource(fixtures_dir / MOVIES)
    assert src.media_type == "movie"
    recs = list(src.records(DAY))
    out = [validate_record(r, source="export", partition="2024-05-01") for r in recs]
    valid = [r for r in out if isinstance(r, ValidTitle)]
    assert [v.payload["title"] for v in valid] == ["Fight Club", "The Matrix", "Deleted Since"]
    [bad] = [r for r in out if isinstance(r, Reject)]
    assert bad.field == "<record>" and f"{MOVIES}:line 5" in bad.reason


def test_tv_export_source(fixtures_dir: Path) -> None:
    out = validate_all(ExportSource(fixtures_dir / "tv_series_ids_01_15_2025.json.gz"))
    assert [(v.media_type, v.payload["name"]) for v in out] == [("tv", "The Boys"), ("tv", "Game of Thrones")]


def test_export_source_with_client_fetches_details(fixtures_dir: Path, fake_tmdb: FakeTMDB,
                                                   client: TMDBClient) -> None:
    fake_tmdb.add_title("movie", 603, {"title": "The Matrix", "original_title": "The Matrix"})
    src = ExportSource(fixtures_dir / MOVIES, client=client)
    out = validate_all(src)
    valid = [r for r in out if isinstance(r, ValidTitle)]
    assert [(v.tmdb_id, v.payload["title"]) for v in valid] == [(550, "Fight Club"), (603, "The Matrix")]
    assert valid[0].payload["credits"]["cast"] and valid[0].payload["keywords"]["keywords"]
    assert [m.record["id"] for m in src.missing] == [999999999]
    missing = src.missing[0]
    assert missing.kind == "missing" and missing.field == "id" and missing.partition == "2024-05-01"
    assert "404" in missing.reason
    # adult/video entries were never fetched; the malformed line was not either
    fetched = {r.path for r in fake_tmdb.log}
    assert fetched == {"/3/movie/550", "/3/movie/603", "/3/movie/999999999"}
    assert any(isinstance(r, Reject) and r.field == "<record>" for r in out)


def test_api_source_changes_plus_extra_ids(fake_tmdb: FakeTMDB, client: TMDBClient) -> None:
    fake_tmdb.set_changes("movie", [550, 12345, (777, True)])
    fake_tmdb.set_changes("tv", [76479])
    src = ApiSource(client, extra_ids=[("movie", 550), ("tv", 1399)])
    out = validate_all(src)
    assert [(v.media_type, v.tmdb_id) for v in out] == [("movie", 550), ("tv", 76479)]
    assert sorted((m.record["media_type"], m.record["id"]) for m in src.missing) == [("movie", 12345), ("tv", 1399)]
    changes = fake_tmdb.requests_to("/changes")
    assert {(r.params["start_date"], r.params["end_date"]) for r in changes} == {("2024-05-01", "2024-05-01")}
    # a second partition starts a fresh missing list
    validate_all(src, date(2024, 5, 2))
    assert len(src.missing) == 2


def test_make_source(fixtures_dir: Path, fake_tmdb: FakeTMDB, client: TMDBClient) -> None:
    assert SOURCE_NAMES == ("sample", "csv_dump", "export", "api")
    assert make_source("sample", seed=3).seed == 3
    assert make_source("csv_dump", path=str(fixtures_dir / "tmdb_5000_movies_sample.csv")).name == "csv_dump"
    assert make_source("export", path=str(fixtures_dir / MOVIES), client=client).client is client
    assert make_source("api", client=client).name == "api"


@pytest.mark.parametrize(
    ("name", "path", "words"),
    [
        ("csv_dump", None, ["csv_dump", "no path was given", "tmdb_5000_movies.csv"]),
        ("export", None, ["export", "no path was given", "movie_ids_"]),
        ("export", "nope.json.gz", ["nope.json.gz", "no such file"]),
        ("csv_dump", ".", ["is a directory"]),
        ("kaggle", None, ["'kaggle'", "sample, csv_dump, export, api"]),
    ],
)
def test_make_source_refuses_what_no_retry_can_fix(fixtures_dir: Path, name: str, path: str | None,
                                                   words: list[str]) -> None:
    full = None if path is None else str(fixtures_dir / path)
    with pytest.raises(SourceError) as info:
        make_source(name, path=full)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert deterministic_reason(info.value) == str(info.value) and not is_transient(info.value)


def test_make_api_source_needs_credentials() -> None:
    with pytest.raises(TMDBConfigError, match="TMDB_API_KEY") as info:
        make_source("api")
    assert not is_transient(info.value) and "TMDB_READ_TOKEN" in deterministic_reason(info.value)


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception:
            raise outer from None  # like WarehouseError: the cause is hidden but kept as context
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (httpx.ConnectTimeout("timed out"), True),
        (TMDBError("boom", status=0), True),  # the client's network failure after its own retries
        (TMDBError("slow down", status=429), True),
        (TMDBError("bad gateway", status=502), True),
        (TMDBError("refused", status=401), False),
        (TMDBError("no such endpoint", status=404), False),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (_raised_from(RuntimeError("Cannot reach Postgres"), psycopg.OperationalError("refused")), True),
        (ConnectionResetError(104, "reset"), True),
        (TimeoutError("read timed out"), True),
        (FileNotFoundError(2, "No such file or directory", "/data/x.csv"), False),
        (SourceError("x.csv is not a TMDB 5000 movies CSV"), False),
        (_raised_from(SourceError("wrong file"), httpx.ReadError("reset")), False),  # the head decides
        (KeyError("a bug"), False),
    ],
)
def test_only_transient_failures_are_retryable(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_deterministic_reason_names_the_file() -> None:
    reason = deterministic_reason(PermissionError(13, "Permission denied", "/data/dump.csv"))
    assert reason is not None and "/data/dump.csv" in reason and "permission denied" in reason
    assert deterministic_reason(KeyError("a bug")) is None  # unknown: not claimed to be either
