"""The one shape every legacy reader yields, and the source-side digests the parity checks compare.

A reader turns each source record into a `LegacyRecord`: the vector as the source client returned it
(float32), the document and the metadata exactly as stored (never repaired), or, for AgentDB, the row
converted to JSON-able values. The digests are computed here, on the source side, from those values:

* `vector_md5`: md5 of the float32 values in big-endian order. Postgres computes the same from the
  staged `vector` (`md5(substring(vector_send(v) from 5))`: pgvector's binary form is a 2-byte
  dimension, 2 unused bytes, then big-endian float4s), so equal digests mean bit-identical vectors.
* `text_md5`: md5 of the document's UTF-8 bytes; Postgres's `md5(text)` hashes the same bytes.
* `canonical_json`: sorted keys, no spaces, no NaN; compared as jsonb on the Postgres side.
* `fingerprint`: the three together; it decides insert / update / unchanged on a re-import.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

# Where each dimension of a vector-store source goes (column of vectors.vector_store).
VECTOR_COLUMNS = {384: "embedding", 768: "embedding_768", 1536: "embedding_1536"}

SPACES = ("l2", "cosine", "ip")


class LegacySourceError(RuntimeError):
    """A source that cannot be migrated as it is. The message says what, where, and what to do."""


@dataclass
class LegacyRecord:
    collection: str  # Chroma collection, export name, or AgentDB table
    source_id: str
    target: str  # target table, e.g. 'vectors.vector_store', 'memory.episodes'
    vector: np.ndarray | None = None  # float32, 1-d
    document: str | None = None
    metadata: dict[str, Any] | None = None
    digests: dict[str, Any] = field(default_factory=dict)
    # the vector's float32 values big-endian, as pgvector's binary form and the checksum both take them;
    # a reader that converts a whole batch at once passes them in
    vec_be: bytes | None = field(default=None, repr=False)

    def compute(self) -> LegacyRecord:
        if self.vector is not None and self.vec_be is None:
            self.vec_be = np.ascontiguousarray(self.vector, dtype=">f4").tobytes()
        vec_md5 = hashlib.md5(self.vec_be).hexdigest() if self.vec_be is not None else None
        doc_md5 = text_md5(self.document) if self.document is not None else None
        meta_text = canonical_json(self.metadata) if self.metadata is not None else None
        self.digests = {
            "dim": int(self.vector.shape[0]) if self.vector is not None else None,
            "vec_md5": vec_md5,
            "doc_md5": doc_md5,
            "meta_text": meta_text,
            "fingerprint": fingerprint(vec_md5, doc_md5, meta_text),
        }
        return self


def as_float32(values: Any, *, where: str) -> np.ndarray:
    """The vector as float32, refusing anything that would change its values.

    Chroma's client hands back float64 arrays made from the stored float32s; converting back is
    exact. A value that float32 cannot hold exactly (a JSON export's 0.1 is fine: it is what the
    exporter wrote from a float32) is still taken as float32, which is what a float32 store held.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise LegacySourceError(f"{where}: the vector is not a flat list of numbers (shape {arr.shape})")
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise LegacySourceError(f"{where}: the vector holds non-numeric values")
    out = arr.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise LegacySourceError(f"{where}: the vector holds NaN or infinite values")
    return out


def vector_md5(vec: np.ndarray) -> str:
    return hashlib.md5(np.ascontiguousarray(vec, dtype=">f4").tobytes()).hexdigest()


def text_md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(vec_md5: str | None, doc_md5: str | None, meta_text: str | None) -> str:
    h = hashlib.md5()
    for part in (vec_md5, doc_md5, meta_text):
        h.update(b"\x00" if part is None else b"\x01" + part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


def storable_text(text: str, *, where: str) -> str:
    """Text goes to Postgres exactly as read, or not at all: NUL and lone surrogates (what a decoder
    leaves for undecodable bytes) cannot be stored in a text column, and we never repair text."""
    if "\x00" in text:
        raise LegacySourceError(
            f"{where}: contains a NUL character (offset {text.index(chr(0))}), which PostgreSQL text cannot "
            "hold; the migration never alters text, so fix or remove this record in the source"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LegacySourceError(
            f"{where}: is not valid Unicode (undecodable bytes at offset {exc.start}); the migration never "
            "repairs text, so fix or remove this record in the source"
        ) from None
    return text


MAX_JSON_DEPTH = 64  # deeper metadata is refused; no legacy store nests past a few levels


def json_safe(value: Any, *, where: str, depth: int = 0) -> Any:
    """Metadata as jsonb can hold it: finite numbers only (JSON has no NaN), storable keys and text."""
    if depth > MAX_JSON_DEPTH:
        raise LegacySourceError(f"{where}: nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise LegacySourceError(f"{where}: holds {value!r}, which JSON (and so jsonb) cannot represent")
    if isinstance(value, dict):
        return {storable_text(str(k), where=f"{where} key"): json_safe(v, where=f"{where}.{k}", depth=depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, where=where, depth=depth + 1) for v in value]
    if isinstance(value, str):
        return storable_text(value, where=where)
    return value


# --------------------------------------------------------------------------- time


def epoch_to_iso(value: Any, unit: str, *, where: str) -> str | None:
    """Epoch seconds or milliseconds as an ISO 8601 UTC timestamp with microseconds (timestamptz's
    precision), or None. Integer arithmetic, so no float rounding moves a millisecond."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LegacySourceError(f"{where}: {value!r} is not an epoch {unit} number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LegacySourceError(f"{where}: {value!r} is not an epoch {unit} number")
        micros = round(value * (1_000_000 if unit == "s" else 1_000))
    else:
        micros = value * (1_000_000 if unit == "s" else 1_000)
    try:
        moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + _micro_delta(micros)
    except OverflowError:
        raise LegacySourceError(f"{where}: {value!r} epoch {unit} is outside the representable range") from None
    return moment.isoformat(timespec="microseconds")


def _micro_delta(micros: int):
    from datetime import timedelta

    return timedelta(microseconds=micros)
