"""What every legacy reader offers: its collections (or tables), streamed in batches, a fingerprint
of the whole source, what it could not read, and the source's own state.

Readers never hold a whole source in memory: `batches()` yields lists of at most `batch_size`
records, and only the ids seen so far (for duplicate detection) grow with the source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gateway_pipelines.lib.migration.records import LegacyRecord, LegacySourceError

KINDS = ("chroma", "ruvector", "agentdb")
DEFAULT_BATCH = 2000


@dataclass
class CollectionInfo:
    name: str
    target: str  # 'vectors.vector_store', 'memory.episodes', ...
    dim: int | None = None
    space: str | None = None  # l2 | cosine | ip, for k-NN parity
    source_count: int = 0  # what the source itself says it holds
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    line_number: int
    reason: str
    raw: str | None = None


class LegacyReader(Protocol):
    kind: str
    path: Path

    def fingerprint(self) -> str: ...

    def collections(self) -> list[CollectionInfo]: ...

    def batches(self, info: CollectionInfo) -> Iterator[list[LegacyRecord]]: ...

    @property
    def rejects(self) -> list[Reject]: ...

    def state(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def file_digest(path: Path, h=None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detect_kind(path: Path) -> str | None:
    """The kind of a landed file or folder, by its shape: a folder with chroma.sqlite3 is Chroma, a
    .json/.jsonl/.ndjson file a RuVector export, a .sqlite/.sqlite3/.db file an AgentDB file."""
    if path.is_dir():
        return "chroma" if (path / "chroma.sqlite3").exists() else None
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson"):
        return "ruvector"
    if suffix in (".sqlite", ".sqlite3", ".db"):
        return "agentdb"
    return None


def open_reader(kind: str, path: str | Path, *, batch_size: int = DEFAULT_BATCH) -> LegacyReader:
    """The reader for `kind`, after checking that `path` exists and has that kind's shape."""
    p = Path(path).expanduser().resolve()
    if kind not in KINDS:
        raise LegacySourceError(f"unknown legacy source kind {kind!r}: use one of {', '.join(KINDS)}")
    if not p.exists():
        raise LegacySourceError(f"{kind} source {p} does not exist")
    if kind == "chroma":
        from gateway_pipelines.lib.migration.chroma import ChromaReader

        return ChromaReader(p, batch_size=batch_size)
    if kind == "ruvector":
        from gateway_pipelines.lib.migration.ruvector import RuVectorReader

        return RuVectorReader(p, batch_size=batch_size)
    from gateway_pipelines.lib.migration.agentdb import AgentDBReader

    return AgentDBReader(p, batch_size=batch_size)


def source_key(kind: str, path: str | Path) -> str:
    """The identity of a source for the id map: re-importing the same path updates the same rows."""
    return f"{kind}:{Path(path).expanduser().resolve()}"
