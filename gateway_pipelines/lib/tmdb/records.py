"""Plain records passed between TMDB sources, validation and storage."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

MEDIA_TYPES: tuple[str, ...] = ("movie", "tv")


class SourceError(ValueError):
    """A problem with a source's name, settings or file that no retry can fix.

    The message names the setting or the file and says what to change; the Dagster layer turns it
    into a non-retried failure whose headline is that message.
    """


def file_error(path: str | Path, exc: OSError) -> SourceError:
    """A SourceError saying why `path` cannot be opened, in words a person can act on."""
    shown = Path(path).expanduser()
    where = str(shown) if shown.is_absolute() else f"{shown} (relative to {Path.cwd()})"
    if isinstance(exc, FileNotFoundError):
        why = "no such file; check the path (it is read on the machine that runs the step)"
    elif isinstance(exc, IsADirectoryError):
        why = "it is a directory; give the file inside it"
    elif isinstance(exc, PermissionError):
        why = "permission denied; make it readable by the user that runs the step"
    elif exc.errno == errno.ENOTDIR:
        why = "a parent of it is a file, not a directory; check the path"
    else:
        why = f"{exc.strerror or exc}; check the path"
    return SourceError(f"{where} cannot be read: {why}")


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
    # The reason without the offending value and the record's location, so rejects of one kind
    # group together in a report ("vote_average is outside 0-10", not one line per bad value).
    rule: str = ""

    @property
    def rule_or_reason(self) -> str:
        return self.rule or self.reason
