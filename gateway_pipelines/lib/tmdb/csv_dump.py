"""Stream the public "TMDB 5000 movies" CSV as canonical movie records."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .records import SourceError, SourceRecord, file_error

TMDB5000_COLUMNS: tuple[str, ...] = (
    "budget", "genres", "homepage", "id", "keywords", "original_language", "original_title",
    "overview", "popularity", "production_companies", "production_countries", "release_date",
    "revenue", "runtime", "spoken_languages", "status", "tagline", "title", "vote_average", "vote_count",
)
_JSON_COLUMNS = ("genres", "keywords", "production_companies", "production_countries", "spoken_languages")
_NUMBER_COLUMNS = ("budget", "id", "popularity", "revenue", "runtime", "vote_average", "vote_count")


def read_tmdb5000_csv(path: str | Path) -> Iterator[SourceRecord]:
    """One SourceRecord per row; bad cells are kept as text so validation can reject them.

    A bad cell costs one row (validation rejects it); a file that is not a UTF-8 CSV with the
    TMDB 5000 header raises SourceError, since no row of it can be trusted.
    """
    path = Path(path)
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise file_error(path, exc) from exc
    reader = csv.DictReader(fh)
    with fh:
        try:
            fieldnames = reader.fieldnames or []
            missing = [c for c in TMDB5000_COLUMNS if c not in fieldnames]
            if missing:
                raise SourceError(f"{path} is not a TMDB 5000 movies CSV: columns {missing} are missing; "
                                  f"the header must be {','.join(TMDB5000_COLUMNS)}")
            for row in reader:
                # line_num is where the row ends, which is where an editor shows it
                yield SourceRecord("movie", row_to_movie(row), f"{path.name}:line {reader.line_num}")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{path} is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} near "
                              f"line {reader.line_num + 1}); re-save it as UTF-8 CSV") from exc
        except csv.Error as exc:
            raise SourceError(f"{path} is not a readable CSV at line {reader.line_num}: {exc}; "
                              "fix the file or export it again") from exc


def row_to_movie(row: dict[str, str | None]) -> dict[str, Any]:
    """Map one CSV row to the TMDB /movie/{id} details shape."""
    record: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None:  # extra cells beyond the header
            record["__extra_cells__"] = cell
            continue
        if column in _JSON_COLUMNS:
            record[column] = _json_cell(cell)
        elif column in _NUMBER_COLUMNS:
            record[column] = _number_cell(cell)
        else:
            record[column] = cell
    keywords = record.get("keywords")
    if isinstance(keywords, list):
        record["keywords"] = {"keywords": keywords}
    return record


def _json_cell(cell: str | None) -> Any:
    if cell is None or not cell.strip():
        return None
    try:
        return json.loads(cell)
    except ValueError:
        return cell  # left as text: validation names the column


def _number_cell(cell: str | None) -> Any:
    if cell is None or not cell.strip():
        return None
    text = cell.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return cell  # left as text: validation names the column
    return int(number) if number.is_integer() else number
