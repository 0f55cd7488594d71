"""Stream the public "TMDB 5000 movies" CSV as canonical movie records."""

from __future__ import annotations

import csv
import json
import re
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


# A quoted cell may span lines, but not this many: past it, the quote is taken as never closed.
MAX_ROW_LINES = 200
MAX_ROW_CHARS = 16 * 1024 * 1024
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape
# csv's default cap (131,072 characters a cell) would fail the row of a long overview; validation
# truncates long text with a warning instead.
csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW_CHARS))


def read_tmdb5000_csv(path: str | Path) -> Iterator[SourceRecord]:
    """One SourceRecord per row; a row that cannot be read becomes a malformed record with its line.

    Rows are assembled from physical lines here rather than by csv.reader over the file, so that one
    bad row costs only itself: a quote that never closes, a truncated line, bytes that are not
    UTF-8 or a cell of any size are each reported on their own line, and reading goes on at the
    next line. Only a file without the TMDB 5000 header raises SourceError: no row of it can be
    trusted. Bad cells inside a well-formed row are kept as text so that validation names them.
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise file_error(path, exc) from exc
    with fh:
        header_bytes = fh.readline()
        try:
            header_text = header_bytes.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{path} is not UTF-8 text (its header line has the byte "
                              f"{header_bytes[exc.start:exc.start + 1]!r}); re-save it as UTF-8 CSV") from exc
        fieldnames = next(csv.reader([header_text]), [])
        missing = [c for c in TMDB5000_COLUMNS if c not in fieldnames]
        if missing:
            raise SourceError(f"{path} is not a TMDB 5000 movies CSV: columns {missing} are missing; "
                              f"the header must be {','.join(TMDB5000_COLUMNS)}")
        for first, last, cells, problem in _rows(fh, len(fieldnames), start_line=2):
            ref = f"{path.name}:line {first}" if first == last else f"{path.name}:lines {first}-{last}"
            if problem is None:
                bad = next((n for n, c in zip(fieldnames, cells) if _UNDECODABLE.search(c)), None)
                if bad is not None:
                    # the row itself is whole: keep its cells (id, title) beside the reason
                    reason = f"column {bad} is not valid UTF-8 text; re-save the file as UTF-8"
                    record = {**row_to_movie(dict(zip(fieldnames, cells))), **malformed(cells, first, reason)}
                    yield SourceRecord("movie", record, ref)
                    continue
            if problem is not None:
                yield SourceRecord("movie", malformed(cells, first, problem), ref)
                continue
            yield SourceRecord("movie", row_to_movie(dict(zip(fieldnames, cells))), ref)


def malformed(cells: list[str] | str, line: int, reason: str) -> dict:
    text = cells if isinstance(cells, str) else ",".join(cells)
    return {"__malformed__": text[:2000], "__line__": line, "__reason__": reason}


def _rows(fh, width: int, *, start_line: int) -> Iterator[tuple[int, int, list[str], str | None]]:
    """(first line, last line, cells, problem or None) for every row of the rest of the file."""
    pending: list[str] = []  # physical lines read but not yet consumed (after a bad row, re-read)
    line_no = start_line  # number of pending[0]

    def physical() -> Iterator[str]:
        while True:
            raw = fh.readline()
            if not raw:
                return
            yield raw.decode("utf-8", "surrogateescape")

    source = physical()
    while True:
        if not pending:
            nxt = next(source, None)
            if nxt is None:
                return
            pending.append(nxt)
        if not pending[0].strip():
            pending.pop(0)
            line_no += 1
            continue
        # gather lines until the quotes balance (a quoted cell may hold newlines)
        taken, quotes, chars = 0, 0, 0
        while True:
            if taken == len(pending):
                nxt = next(source, None)
                if nxt is None:
                    break
                pending.append(nxt)
            quotes += pending[taken].count('"')
            chars += len(pending[taken])
            taken += 1
            if quotes % 2 == 0 or taken >= MAX_ROW_LINES or chars > MAX_ROW_CHARS:
                break
        lines = pending[:taken]
        first = line_no
        if quotes % 2:
            where = "the end of the file" if taken < MAX_ROW_LINES and chars <= MAX_ROW_CHARS else \
                f"{taken} lines"
            yield first, first, [lines[0].rstrip("\r\n")], (
                f"a quoted cell opens on line {first} and does not close before {where}; close the quote "
                "(a cut-off last line looks like this too)")
            pending.pop(0)
            line_no += 1
            continue
        try:
            parsed = list(csv.reader(lines))
        except csv.Error as exc:  # e.g. a stray carriage return inside an unquoted cell
            parsed = [[lines[0].rstrip("\r\n")], [str(exc)]]
        cells = parsed[0] if len(parsed) == 1 else []
        swallowed = taken > 1 and any(_is_whole_row(line, width) for line in lines[1:])
        if len(parsed) != 1 or len(cells) != width or swallowed:
            if taken > 1:
                problem = (f"a quoted cell opens on line {first} and does not close before the next row "
                           "starts; close the quote on that line")
                yield first, first, [lines[0].rstrip("\r\n")], problem
                pending.pop(0)
                line_no += 1
                continue
            problem = (f"the line has {len(cells)} cells where the header has {width}; the line is cut off "
                       "or has a stray comma or quote") if len(parsed) == 1 else (
                       "the line cannot be split into cells (a stray quote or carriage return); fix the quoting")
            yield first, first, cells or [lines[0].rstrip("\r\n")], problem
        else:
            yield first, first + taken - 1, cells, None
        del pending[:taken]
        line_no += taken


def _is_whole_row(line: str, width: int) -> bool:
    """A physical line that is a complete row by itself: what a runaway quote swallowed."""
    if line.count('"') % 2:
        return False
    try:
        return len(next(csv.reader([line]), [])) == width
    except csv.Error:
        return False


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
    except (ValueError, RecursionError):
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
