"""Stream TMDB's daily ID exports (movie_ids_MM_DD_YYYY.json.gz, tv_series_ids_...)."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from .records import SourceError, file_error

_MOVIE_PREFIXES = ("movie_ids",)
_TV_PREFIXES = ("tv_series_ids", "tv_ids")
_OTHER_PREFIXES = ("person_ids", "collection_ids", "tv_network_ids", "keyword_ids", "production_company_ids")


def iter_export_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; bad lines become {"__malformed__", "__line__"}.

    Decoding happens per line, so one bad byte or bad JSON costs only that line. A file whose gzip
    stream is cut off or corrupt raises SourceError, wherever the break is: the lines after it are
    lost, and loading the rest would pass every check with titles silently missing.
    """
    n = 0
    try:
        fh = gzip.open(path, "rb")
    except OSError as exc:
        raise file_error(path, exc) from exc
    try:
        with fh:
            for n, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield n, _malformed(raw.decode("utf-8", "replace"), n)
                    continue
                try:
                    obj = json.loads(text)
                except (ValueError, RecursionError):
                    yield n, _malformed(text, n)
                    continue
                yield n, (obj if isinstance(obj, dict) else _malformed(text, n))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if n == 0:
            raise SourceError(f"{path} is not a gzip-compressed TMDB export ({type(exc).__name__}: {exc}); "
                              "download it again from https://files.tmdb.org/p/exports/ and keep the .json.gz "
                              "as it is") from exc
        # A cut-off or corrupt download. Its lines so far are fine, but the titles after the cut are
        # simply absent, which no check could notice; so the file is refused whole (the load is one
        # transaction, so nothing of it is written) and the message says what to do.
        raise SourceError(f"{path} is cut off or corrupt: its gzip stream breaks after line {n} "
                          f"({type(exc).__name__}: {exc}), so the titles after that line are missing. "
                          "Nothing of it was loaded; download it again from https://files.tmdb.org/p/exports/") from exc


def read_export(path: str | Path, *, include_adult: bool = False, include_video: bool = False) -> Iterator[dict]:
    """Objects of a daily ID export, skipping adult and video entries unless asked."""
    for _, obj in iter_export_lines(path):
        if keep_export_entry(obj, include_adult=include_adult, include_video=include_video):
            yield obj


def keep_export_entry(obj: dict, *, include_adult: bool = False, include_video: bool = False) -> bool:
    """False for adult/video entries the caller did not ask for; malformed lines are kept."""
    if "__malformed__" in obj:
        return True
    if obj.get("adult") is True and not include_adult:
        return False
    if obj.get("video") is True and not include_video:
        return False
    return True


def export_media_type(path: str | Path, first_obj: dict | None = None) -> str:
    """'movie' or 'tv' from the export file name, else from the first object's keys."""
    name = Path(path).name
    if name.startswith(_MOVIE_PREFIXES):
        return "movie"
    if name.startswith(_TV_PREFIXES):
        return "tv"
    if name.startswith(_OTHER_PREFIXES):
        raise SourceError(f"{name} is a TMDB export of {name.split('_ids')[0]}s, not titles; "
                         "use movie_ids_*.json.gz or tv_series_ids_*.json.gz")
    if first_obj is None:
        first_obj = next((obj for _, obj in iter_export_lines(path) if "__malformed__" not in obj), None)
    if first_obj is not None:
        if "original_title" in first_obj:
            return "movie"
        if "original_name" in first_obj:
            return "tv"
    raise SourceError(f"cannot tell whether {name} holds movies or TV series; keep TMDB's file name "
                     "(movie_ids_MM_DD_YYYY.json.gz or tv_series_ids_MM_DD_YYYY.json.gz)")


def _malformed(text: str, n: int) -> dict:
    return {"__malformed__": text.rstrip("\r\n"), "__line__": n}
