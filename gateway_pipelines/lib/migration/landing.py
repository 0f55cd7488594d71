"""What lands in $GATEWAY_HOME/landing/legacy/: each entry's kind, by its shape, and its fingerprint.

A folder with chroma.sqlite3 is a Chroma directory; .json/.jsonl/.ndjson a RuVector export;
.sqlite/.sqlite3/.db an AgentDB file. Anything else is ignored. The run key is the name plus the
fingerprint, so the same source dropped twice runs once and a changed one runs again. Fingerprints
are cached by (size, mtime) so a large file is not hashed on every sensor tick.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gateway_pipelines.lib.migration.chroma import directory_state
from gateway_pipelines.lib.migration.records import LegacySourceError, canonical_json
from gateway_pipelines.lib.migration.sources import detect_kind, file_digest


@dataclass(frozen=True)
class LandedSource:
    path: Path
    kind: str
    fingerprint: str

    @property
    def run_key(self) -> str:
        return f"{self.path.name}:{self.fingerprint.split(':')[-1][:16]}"


def _stamp(path: Path) -> str:
    if path.is_dir():
        parts = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.glob("chroma.sqlite3*"))]
        return canonical_json(parts)
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def fingerprint_of(path: Path, kind: str) -> str:
    if kind == "chroma":
        state = directory_state(path)
        keep = ("collection_id", "dimension", "queue_rows", "queue_max_seq", "segment_seq")
        body = canonical_json({n: {k: s[k] for k in keep} for n, s in sorted(state.items())})
        return "chroma:" + hashlib.sha256(body.encode()).hexdigest()
    return "sha256:" + file_digest(path)


def scan_landing(folder: Path, cache: dict[str, list[str]] | None = None) -> tuple[list[LandedSource], dict]:
    """Every migratable entry of `folder`, oldest first; `cache` maps name -> [stamp, fingerprint]."""
    cache = dict(cache or {})
    out = []
    if not folder.is_dir():
        return out, cache
    for path in sorted(folder.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        if path.name.startswith("."):
            continue
        kind = detect_kind(path)
        if kind is None:
            continue
        stamp = _stamp(path)
        cached = cache.get(path.name)
        if cached and cached[0] == stamp:
            fp = cached[1]
        else:
            try:
                fp = fingerprint_of(path, kind)
            except (OSError, LegacySourceError) as exc:
                fp = "unreadable:" + hashlib.sha256(f"{stamp}:{exc}".encode()).hexdigest()
            cache[path.name] = [stamp, fp]
        out.append(LandedSource(path, kind, fp))
    return out, cache
