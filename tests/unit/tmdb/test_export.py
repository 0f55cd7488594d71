"""Daily ID export reading."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gateway_pipelines.lib.tmdb import export_media_type, read_export
from gateway_pipelines.lib.tmdb.records import SourceError

MOVIES = "movie_ids_01_15_2025.json.gz"
TV = "tv_series_ids_01_15_2025.json.gz"


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def test_skips_adult_and_video_by_default(fixtures_dir: Path) -> None:
    objs = list(read_export(fixtures_dir / MOVIES))
    ids = [o.get("id") for o in objs if "__malformed__" not in o]
    assert ids == [550, 603, 999999999]


def test_includes_adult_and_video_on_request(fixtures_dir: Path) -> None:
    objs = [o for o in read_export(fixtures_dir / MOVIES, include_adult=True, include_video=True)
            if "__malformed__" not in o]
    assert [o["id"] for o in objs] == [550, 603, 800001, 800002, 999999999]


def test_malformed_line_is_quarantined_not_fatal(fixtures_dir: Path) -> None:
    bad = [o for o in read_export(fixtures_dir / MOVIES) if "__malformed__" in o]
    assert bad == [{"__malformed__": '{"adult":false,"id":800003,"original_title":"Cut off', "__line__": 5}]


def test_bad_bytes_and_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "movie_ids_x.json.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b'{"id": 1, "original_title": "A", "adult": false, "video": false}\n')
        fh.write(b'\xff\xfe not utf-8\n')
        fh.write(b"[1, 2]\n\n")
        fh.write(b'{"id": 2, "original_title": "B", "adult": false, "video": false}\n')
    objs = list(read_export(path))
    assert [o.get("id") for o in objs] == [1, None, None, 2]
    assert [o.get("__line__") for o in objs] == [None, 2, 3, None]


def test_a_truncated_download_is_refused_whole_with_where_it_breaks(tmp_path: Path) -> None:
    full = tmp_path / "full.json.gz"
    write_gz(full, [json.dumps({"id": i, "original_name": f"S{i}", "popularity": 1.0}) for i in range(2000)])
    cut = tmp_path / "tv_series_ids_cut.json.gz"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.3)])
    # loading the 30% that is readable would pass every check with 70% of the titles missing
    with pytest.raises(SourceError, match=r"cut off or corrupt: its gzip stream breaks after line \d+.*"
                                          r"Nothing of it was loaded; download it again"):
        list(read_export(cut))


@pytest.mark.parametrize(
    ("name", "first", "expected"),
    [
        ("movie_ids_05_15_2024.json.gz", None, "movie"),
        ("tv_series_ids_05_15_2024.json.gz", None, "tv"),
        ("daily.json.gz", {"id": 1, "original_title": "X"}, "movie"),
        ("daily.json.gz", {"id": 1, "original_name": "X"}, "tv"),
    ],
)
def test_media_type_detection(name: str, first: dict | None, expected: str) -> None:
    assert export_media_type(name, first) == expected


def test_media_type_from_file_contents(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "daily.json.gz", ["not json", json.dumps({"id": 1, "original_name": "X"})])
    assert export_media_type(path) == "tv"


def test_media_type_unknown_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="person"):
        export_media_type("person_ids_05_15_2024.json.gz")
    path = write_gz(tmp_path / "daily.json.gz", [json.dumps({"id": 1})])
    with pytest.raises(ValueError, match="movie_ids_MM_DD_YYYY"):
        export_media_type(path)


def test_a_file_that_is_not_gzip_is_a_source_error_not_a_reject(tmp_path: Path) -> None:
    plain = tmp_path / "movie_ids_01_15_2025.json.gz"
    plain.write_text(json.dumps({"id": 1, "original_title": "A"}) + "\n")  # JSON lines, never gzipped
    with pytest.raises(SourceError, match="not a gzip-compressed TMDB export"):
        list(read_export(plain))
    with pytest.raises(SourceError, match="no such file"):
        list(read_export(tmp_path / "movie_ids_01_16_2025.json.gz"))
