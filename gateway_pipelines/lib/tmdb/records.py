"""Plain records passed between TMDB sources, validation and storage."""

from __future__ import annotations

from dataclasses import dataclass

MEDIA_TYPES: tuple[str, ...] = ("movie", "tv")


@dataclass(frozen=True)
class SourceRecord:
    """One title as a source delivered it, before validation."""

    media_type: str | None  # 'movie' | 'tv' | None when unknown (validation then rejects)
    record: dict  # TMDB details-shaped dict
    ref: str  # where it came from, e.g. "movies.csv:line 17" or "api:/movie/603"


@dataclass(frozen=True)
class ValidTitle:
    """A title that passed validation, with its canonical payload."""

    tmdb_id: int
    media_type: str  # 'movie' | 'tv'
    payload: dict
    content_hash: str  # sha256 hex of the canonical JSON of payload
    warnings: tuple[str, ...] = ()
    payload_json: str = ""  # that canonical JSON, so the loader does not encode it again


@dataclass(frozen=True)
class Reject:
    """A record that was not loaded, and why."""

    source: str
    partition: str  # 'YYYY-MM-DD'
    record: dict  # the raw record, JSON-serialisable
    field: str  # e.g. 'vote_average', 'id', '<record>'
    reason: str  # what is wrong and the fix
    kind: str = "invalid"  # 'invalid' | 'missing' (TMDB 404: deleted or unknown title)
