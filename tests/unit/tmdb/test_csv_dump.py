"""read_tmdb5000_csv on a fixture in the exact format of the public dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_pipelines.lib.tmdb import Reject, ValidTitle, read_tmdb5000_csv, validate_record
from gateway_pipelines.lib.tmdb.records import SourceError

CSV_NAME = "tmdb_5000_movies_sample.csv"


def results(path: Path) -> dict[int | str, ValidTitle | Reject]:
    out = {}
    for rec in read_tmdb5000_csv(path):
        result = validate_record(rec, source="csv_dump", partition="2024-05-01")
        out[rec.record.get("id")] = result
    return out


def test_rows_become_canonical_movies(fixtures_dir: Path) -> None:
    records = list(read_tmdb5000_csv(fixtures_dir / CSV_NAME))
    assert len(records) == 13
    assert all(r.media_type == "movie" for r in records)
    assert records[0].ref == f"{CSV_NAME}:line 2"
    avatar = records[0].record
    assert avatar["id"] == 19995 and avatar["title"] == "Avatar"
    assert avatar["genres"][0] == {"id": 28, "name": "Action"}
    assert avatar["keywords"]["keywords"][0] == {"id": 1463, "name": "culture clash"}
    assert avatar["spoken_languages"][1]["name"] == "Español"
    assert avatar["runtime"] == 162 and avatar["vote_average"] == 7.2
    pirates = records[1].record
    assert pirates["tagline"] == "At the end of the world, the adventure begins."  # quoted comma


def test_every_row_valid_or_rejected_with_reason(fixtures_dir: Path) -> None:
    got = results(fixtures_dir / CSV_NAME)
    valid = {k for k, v in got.items() if isinstance(v, ValidTitle)}
    assert valid == {19995, 285, 206647, 49026, 49529, 603, 380097, 900004}
    expected_rejects = {900001: "vote_average", 900002: "genres", 900003: "title", 900005: "vote_count",
                        900006: "release_date"}
    for tmdb_id, field in expected_rejects.items():
        reject = got[tmdb_id]
        assert isinstance(reject, Reject), tmdb_id
        assert reject.field == field and field in reject.reason and CSV_NAME in reject.reason


def test_empty_cells_and_fallbacks(fixtures_dir: Path) -> None:
    got = results(fixtures_dir / CSV_NAME)
    america = got[380097]
    assert america.payload["release_date"] is None and america.payload["runtime"] is None
    metro = got[900004]
    assert metro.payload["title"] == "Le Dernier Métro" and metro.warnings
    assert got[900001].record["vote_average"] == 11  # raw value kept for the quarantine


def test_wrong_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("id,name\n1,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vote_average"):
        list(read_tmdb5000_csv(path))


def test_rows_that_are_not_utf8_are_rejected_one_by_one(tmp_path: Path, fixtures_dir: Path) -> None:
    latin = tmp_path / "latin1.csv"
    text = (fixtures_dir / CSV_NAME).read_text(encoding="utf-8")
    latin.write_bytes(text.encode("latin-1", errors="replace"))
    records = list(read_tmdb5000_csv(latin))
    assert len(records) == 13  # nothing lost: every row is there, loaded or explained
    bad = [r for r in records if "__malformed__" in r.record]
    assert bad and all("not valid UTF-8" in r.record["__reason__"] for r in bad)
    assert bad[0].ref == f"latin1.csv:line {bad[0].record['__line__']}"
    assert [r.record.get("id") for r in bad] == [900004]  # Le Dernier Métro: é is one latin-1 byte
    assert any(r.record.get("id") == 603 for r in records if "__malformed__" not in r.record)
    header_only_latin = tmp_path / "header.csv"
    header_only_latin.write_bytes("budget,génres\n".encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8 text.*re-save it as UTF-8"):
        list(read_tmdb5000_csv(header_only_latin))
    with pytest.raises(SourceError, match="no such file"):
        list(read_tmdb5000_csv(tmp_path / "gone.csv"))
    with pytest.raises(SourceError, match="is a directory"):
        list(read_tmdb5000_csv(tmp_path))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(SourceError, match="not a TMDB 5000 movies CSV"):
        list(read_tmdb5000_csv(empty))


def test_streams_rows(fixtures_dir: Path) -> None:
    # A generator: the first row arrives before the rest of the file is read.
    rows = read_tmdb5000_csv(fixtures_dir / CSV_NAME)
    assert next(rows).record["id"] == 19995
    rows.close()
