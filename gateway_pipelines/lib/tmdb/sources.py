"""One interface over the four places titles come from: sample, CSV dump, daily export, live API."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Protocol

import httpx
import psycopg

from .client import CREDENTIALS_FIX, TMDBClient, TMDBConfigError, TMDBError
from .csv_dump import read_tmdb5000_csv
from .export import export_media_type, iter_export_lines, keep_export_entry
from .records import MEDIA_TYPES, Reject, SourceError, SourceRecord, file_error
from .sample import generate_catalog

SOURCE_NAMES: tuple[str, ...] = ("sample", "csv_dump", "export", "api")


class TitleSource(Protocol):
    name: str
    missing: list[Reject]  # TMDB 404s seen while iterating (kind='missing')

    def records(self, partition: date) -> Iterator[SourceRecord]: ...


def _missing(source: str, partition: date, media_type: str, tmdb_id: int, extra: dict | None = None) -> Reject:
    return Reject(
        source=source,
        partition=partition.isoformat(),
        record={**(extra or {}), "id": tmdb_id, "media_type": media_type},
        field="id",
        reason=f"TMDB answered 404 for /{media_type}/{tmdb_id}: the title was deleted or never existed; "
               "nothing to load (drop the id from the source if it keeps coming back)",
        kind="missing",
        rule="TMDB answered 404: the title was deleted or never existed",
    )


class SampleSource:
    """The synthetic catalog; the same titles for every partition."""

    name = "sample"

    def __init__(self, seed: int = 7, n_movies: int = 2000, n_tv: int = 500) -> None:
        self.seed, self.n_movies, self.n_tv = seed, n_movies, n_tv
        self.missing: list[Reject] = []

    def records(self, partition: date) -> Iterator[SourceRecord]:
        return generate_catalog(self.seed, self.n_movies, self.n_tv)


class CsvDumpSource:
    """The TMDB 5000 movies CSV; a snapshot, so the same rows for every partition."""

    name = "csv_dump"
    reads_only_its_file = True  # the same bytes are the same records (lib/tmdb/unchanged.py)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.missing: list[Reject] = []

    def records(self, partition: date) -> Iterator[SourceRecord]:
        return read_tmdb5000_csv(self.path)


class ExportSource:
    """A TMDB daily ID export: minimal records alone, or full details when given a client."""

    name = "export"

    def __init__(self, path: str | Path, client: TMDBClient | None = None,
                 include_adult: bool = False, include_video: bool = False) -> None:
        self.path = Path(path)
        self.client = client
        self.include_adult = include_adult
        self.include_video = include_video
        self.media_type = export_media_type(self.path)
        self.missing: list[Reject] = []

    @property
    def reads_only_its_file(self) -> bool:
        """Without a client the records are the file's lines; with one, TMDB's details of today."""
        return self.client is None

    def records(self, partition: date) -> Iterator[SourceRecord]:
        self.missing.clear()  # clear in place: callers hold this list while records stream
        for n, obj in iter_export_lines(self.path):
            if not keep_export_entry(obj, include_adult=self.include_adult, include_video=self.include_video):
                continue
            ref = f"{self.path.name}:line {n}"
            tmdb_id = obj.get("id")
            if self.client is None or "__malformed__" in obj or not _is_id(tmdb_id):
                yield SourceRecord(self.media_type, _minimal(self.media_type, obj), ref)
                continue
            details = self.client.details(self.media_type, tmdb_id)
            if details is None:
                self.missing.append(_missing(self.name, partition, self.media_type, tmdb_id, obj))
                continue
            yield SourceRecord(self.media_type, details, f"{ref} api:/{self.media_type}/{tmdb_id}")


class ApiSource:
    """Titles TMDB reports as changed on the partition day, plus extra ids, with full details."""

    name = "api"

    def __init__(self, client: TMDBClient, media_types: Iterable[str] = MEDIA_TYPES,
                 extra_ids: Iterable[tuple[str, int]] = ()) -> None:
        self.client = client
        self.media_types = tuple(media_types)
        unknown = [m for m in self.media_types if m not in MEDIA_TYPES]
        if unknown:
            raise ValueError(f"ApiSource media_types {unknown} are unknown; use 'movie' and/or 'tv'")
        # Materialised: a generator would be spent after the first partition.
        self.extra_ids = tuple((m, int(i)) for m, i in extra_ids)
        self.missing: list[Reject] = []

    def records(self, partition: date) -> Iterator[SourceRecord]:
        self.missing.clear()  # clear in place: callers hold this list while records stream
        for media_type in self.media_types:
            for tmdb_id in self._ids(media_type, partition):
                details = self.client.details(media_type, tmdb_id)
                if details is None:
                    self.missing.append(_missing(self.name, partition, media_type, tmdb_id))
                    continue
                yield SourceRecord(media_type, details, f"api:/{media_type}/{tmdb_id}")

    def _ids(self, media_type: str, partition: date) -> Iterator[int]:
        seen: set[int] = set()
        for tmdb_id in self.client.changes(media_type, partition, partition):
            seen.add(tmdb_id)
            yield tmdb_id
        for extra_type, tmdb_id in self.extra_ids:
            if extra_type == media_type and tmdb_id not in seen:
                seen.add(tmdb_id)
                yield tmdb_id


FILE_SOURCES: tuple[str, ...] = ("csv_dump", "export")
_EXAMPLE_FILES = {"csv_dump": "tmdb_5000_movies.csv", "export": "movie_ids_05_15_2024.json.gz"}


def make_source(name: str, *, path: str | None = None, client: TMDBClient | None = None,
                seed: int = 7) -> TitleSource:
    """Build a source by name; 'api' needs a client (the TMDB resource builds it from its credentials).

    Every problem no retry can fix raises SourceError (or TMDBConfigError) naming the fix.
    """
    if name == "sample":
        return SampleSource(seed=seed)
    if name in FILE_SOURCES:
        if not path:
            raise SourceError(f"source {name!r} reads a file and no path was given; "
                              f"pass the file's path (e.g. {_EXAMPLE_FILES[name]})")
        file = Path(path).expanduser()
        if not file.is_file():
            problem = IsADirectoryError(21, "Is a directory") if file.is_dir() else FileNotFoundError(2, "No such file")
            raise file_error(file, problem)
        return CsvDumpSource(file) if name == "csv_dump" else ExportSource(file, client=client)
    if name == "api":
        if client is None:
            raise TMDBConfigError(f"source 'api' needs TMDB credentials: {CREDENTIALS_FIX}")
        return ApiSource(client)
    raise SourceError(f"unknown title source {name!r}; valid names are {', '.join(SOURCE_NAMES)}")


# -- which failures deserve a retry -------------------------------------------------
_TRANSIENT_TYPES = (httpx.TransportError, psycopg.OperationalError, ConnectionError, TimeoutError)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: BaseException) -> bool:
    """True for what may pass by itself: network errors, timeouts, TMDB 429/5xx, a lost warehouse.

    The chain is searched because wrappers (TMDBError, WarehouseError) keep the transport error as
    their cause or context. A deterministic error at the head wins: retrying cannot change it.
    """
    if deterministic_reason(exc) is not None:
        return False
    for link in _chain(exc):
        if isinstance(link, TMDBError):
            return link.status == 0 or link.status == 429 or link.status >= 500
        if isinstance(link, _TRANSIENT_TYPES):
            return True
    return False


def deterministic_reason(exc: BaseException) -> str | None:
    """The actionable message of a failure that will happen again on every attempt, else None."""
    if isinstance(exc, (SourceError, TMDBConfigError)):
        return str(exc)
    if isinstance(exc, TMDBError) and 400 <= exc.status < 500 and exc.status != 429:
        return str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)) and exc.filename:
        return str(file_error(exc.filename, exc))
    return None


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _minimal(media_type: str, obj: dict) -> dict:
    """A details-shaped record from one export line (only what the export knows)."""
    if "__malformed__" in obj:
        return obj
    if media_type == "movie":
        return {"id": obj.get("id"), "title": obj.get("original_title"), "original_title": obj.get("original_title"),
                "popularity": obj.get("popularity"), "adult": obj.get("adult"), "video": obj.get("video")}
    return {"id": obj.get("id"), "name": obj.get("original_name"), "original_name": obj.get("original_name"),
            "popularity": obj.get("popularity"), "adult": obj.get("adult")}
