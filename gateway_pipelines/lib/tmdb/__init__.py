"""TMDB ingestion: HTTP client, the four title sources, validation into canonical payloads."""

from .client import ClientStats, TMDBClient, TMDBConfigError, TMDBError
from .csv_dump import read_tmdb5000_csv
from .export import export_media_type, read_export
from .genres import ALL_GENRE_IDS, MOVIE_GENRES, TV_GENRES
from .ratelimit import TokenBucket
from .records import MEDIA_TYPES, Reject, SourceRecord, ValidTitle
from .sample import generate_catalog
from .sources import (
    SOURCE_NAMES,
    ApiSource,
    CsvDumpSource,
    ExportSource,
    SampleSource,
    TitleSource,
    make_source,
)
from .validation import (
    MAX_OVERVIEW_CHARS,
    MAX_TAGLINE_CHARS,
    MAX_TITLE_CHARS,
    content_hash,
    dedupe_latest,
    validate_record,
)

__all__ = [
    "ALL_GENRE_IDS", "MAX_OVERVIEW_CHARS", "MAX_TAGLINE_CHARS", "MAX_TITLE_CHARS", "MEDIA_TYPES", "MOVIE_GENRES",
    "SOURCE_NAMES", "TV_GENRES", "ApiSource", "ClientStats", "CsvDumpSource", "ExportSource", "Reject",
    "SampleSource", "SourceRecord", "TMDBClient", "TMDBConfigError", "TMDBError", "TitleSource", "TokenBucket",
    "ValidTitle", "content_hash", "dedupe_latest", "export_media_type", "generate_catalog", "read_export",
    "make_source", "read_tmdb5000_csv", "validate_record",
]
