"""When a file need not be read again: the same bytes, the same loader, and raw as that load left it.

A file source's batch is keyed by the file's sha256 (`raw.tmdb_batches.batch_key`). Reading it
again gives the same records only if the code that parses and validates it is the same, so every
batch records `LOADER_VERSION`; and merging them again changes nothing only if raw still holds what
the batch left there, so every load, release and rerun of a batch records `raw_watermark` right
after its merge. When all three match, the rerun is recorded against the batch as 'unchanged_file'
and the file is not read.

The watermark covers all of raw.tmdb_titles, not just the day's rows: titles are keyed by
(media_type, id) across days, so another day's file (or the API) may have overwritten a title this
file carries, and re-reading it would put the file's version back. Any such write, anywhere in
the table, makes the next rerun read the file in full once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from datetime import date, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from gateway_pipelines.lib.tmdb.batches import BatchRecord, find_batch
from gateway_pipelines.lib.tmdb.contract import STAGING_YAML
from gateway_pipelines.lib.watermarks import fingerprint_text, table_fingerprint

UNCHANGED_FILE = "unchanged_file"
APPLIED_STATUSES = ("loaded", "released")  # a held batch is read again: its gate must judge it anew

_HERE = Path(__file__).resolve().parent
# Everything that decides what a file becomes in raw: readers, validation and its contract (the
# staging model's column types), the records and the merge. A digest rather than a number bumped by
# hand: a forgotten bump would let a changed validator skip files it now judges differently, while
# an edit that changes nothing costs one full read per file.
_LOADER_FILES = (
    _HERE / "csv_dump.py", _HERE / "export.py", _HERE / "validation.py", _HERE / "contract.py",
    _HERE / "records.py", _HERE / "sources.py", _HERE / "raw_store.py", STAGING_YAML,
)
_LOADER_PACKAGES = ("pydantic", "orjson")  # validation's behaviour is theirs too


def loader_version(files: tuple[Path, ...] = _LOADER_FILES, packages: tuple[str, ...] = _LOADER_PACKAGES) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for package in packages:
        digest.update(f"{package}=={importlib.metadata.version(package)}\0".encode())
    return digest.hexdigest()[:16]


LOADER_VERSION = loader_version()


def raw_watermark(conn: psycopg.Connection, source: str, partition: date) -> str:
    """raw.tmdb_titles and the (source, day)'s quarantine as a fingerprint (see lib/watermarks).

    The rejects count too: a rerun re-quarantines what someone deleted from raw.tmdb_rejects."""
    titles = table_fingerprint(conn, "raw.tmdb_titles")
    rejects = table_fingerprint(conn, "raw.tmdb_rejects", where=sql.SQL("source = %s AND partition = %s"),
                                params=(source, partition.isoformat()))
    return f"titles={fingerprint_text(titles)};rejects={fingerprint_text(rejects)}"


@dataclass(frozen=True)
class FileMatch:
    """Whether a file needs reading, against the batch it would be; `reason` says why, for a person."""

    batch: BatchRecord | None
    unchanged: bool
    reason: str


def match_unchanged_file(conn: psycopg.Connection, *, partition: date, source: str, file_sha256: str,
                         version: str = LOADER_VERSION) -> FileMatch:
    batch = find_batch(conn, partition, source, file_sha256, lock=False)
    if batch is None:
        return FileMatch(None, False, f"no batch of this file ({file_sha256[:12]}) for {partition} and source "
                                      f"{source} yet")
    if batch.status not in APPLIED_STATUSES:
        return FileMatch(batch, False, f"batch {batch.batch_id} of this file is {batch.status}: the file is read "
                                       "again so that the reject gate judges it anew")
    if batch.loader_version != version:
        was = batch.loader_version or "a loader before versions were recorded"
        return FileMatch(batch, False, f"batch {batch.batch_id} was counted by {was}; this loader is {version}")
    now = raw_watermark(conn, source, partition)
    if batch.raw_watermark != now:
        return FileMatch(batch, False, f"raw.tmdb_titles or the day's rejects changed since batch "
                                       f"{batch.batch_id} was applied{_at(batch)}")
    return FileMatch(batch, True, f"the file's sha256 is batch {batch.batch_id}'s, the loader is the same "
                                  f"({version}), and raw.tmdb_titles and the day's rejects are as the batch left "
                                  f"them{_at(batch)}: reading it again would change nothing")


def _at(batch: BatchRecord) -> str:
    return f" at {batch.applied_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC" if batch.applied_at else ""
