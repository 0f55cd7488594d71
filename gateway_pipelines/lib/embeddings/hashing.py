"""Embedding hashes: decide whether a stored vector is still current.

:func:`embedding_hash` covers everything a content vector depends on -- the plot
embedding input text, every field the genre / mood / metadata blocks read, the
provider's ``model_id`` and the block weights -- so any change of input, model or
weights changes the hash and the row gets re-embedded; nothing else does.
Numbers are normalised (``7``, ``7.0``, ``Decimal('7.0')`` hash alike) and genre
ids are de-duplicated and sorted, as the blocks ignore their order.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from typing import Any, Mapping

from .genre_features import as_genre_ids
from .hybrid import BlockWeights, embedding_text, mood_text
from .metadata_features import METADATA_FIELDS, row_year

__all__ = ["embedding_hash", "HASH_VERSION", "hash_payload"]

HASH_VERSION = 1


def _norm(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    try:
        f = float(value)  # int, float, Decimal, numpy scalars
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(f):
        return None
    return repr(f)


def hash_payload(row: Mapping[str, Any], model_id: str, weights: BlockWeights) -> dict[str, Any]:
    """The canonical structure :func:`embedding_hash` digests (useful for debugging)."""
    meta = {f: _norm(row.get(f)) for f in METADATA_FIELDS if f not in ("year", "release_date")}
    meta["year"] = row_year(row)  # all metadata_block takes from year / release_date
    return {
        "v": HASH_VERSION,
        "text": embedding_text(row),
        "mood_text": mood_text(row),
        "genre_ids": sorted(set(as_genre_ids(row.get("genre_ids")))),
        "metadata": meta,
        "model_id": str(model_id),
        "weights": weights.fingerprint(),
    }


def embedding_hash(row: Mapping[str, Any], model_id: str, weights: BlockWeights) -> str:
    """sha256 hex digest over the vector's inputs, model id and weights fingerprint."""
    payload = json.dumps(hash_payload(row, model_id, weights), sort_keys=True, ensure_ascii=False,
                         separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
