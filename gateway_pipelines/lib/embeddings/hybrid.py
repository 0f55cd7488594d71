"""Hybrid 768-d content vectors: plot | genre | mood | metadata.

=========  ==========  ==============================================================
block      dims        source
=========  ==========  ==============================================================
plot       0 - 512     text embedding of :func:`embedding_text` (OpenAI or local LSA)
genre      512 - 576   :func:`.genre_features.genre_block`
mood       576 - 640   :func:`.mood_features.mood_block` (energy, tone, intensity, era bands)
metadata   640 - 768   :func:`.metadata_features.metadata_block`
=========  ==========  ==============================================================

:func:`compose` L2-normalises every block on its own (a zero block stays zero),
multiplies it by its :class:`BlockWeights` weight, and L2-normalises the whole
vector.  For two vectors with all blocks present, cosine similarity is therefore
``sum_b w_b**2 * cos_b / sum_b w_b**2``: the squared weights set how much each aspect
counts.  Queries (:func:`build_query_vector`) use the same builder;
blocks the query says nothing about stay zero so they do not bias the ranking.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .base import PLOT_DIM, EmbeddingDimensionError, EmbeddingProvider, l2_normalize_rows
from .genre_features import GENRE_BLOCK_DIM, genre_block, genre_blocks
from .metadata_features import METADATA_BLOCK_DIM, metadata_blocks, query_metadata_block
from .mood_features import MOOD_BLOCK_DIM, mood_block, mood_blocks, mood_slot


class EmptyQueryError(ValueError):
    """The query vector is zero: no known word, no filter with a weight; nothing can be ranked."""


__all__ = [
    "BLOCKS",
    "DIM",
    "BlockWeights",
    "QueryIntent",
    "build_content_vectors",
    "build_query_vector",
    "compose",
    "embedding_text",
    "mood_text",
    "split_blocks",
]

BLOCKS: dict[str, tuple[int, int]] = {"plot": (0, 512), "genre": (512, 576), "mood": (576, 640),
                                      "metadata": (640, 768)}
DIM = 768
_SIZES = {"plot": PLOT_DIM, "genre": GENRE_BLOCK_DIM, "mood": MOOD_BLOCK_DIM, "metadata": METADATA_BLOCK_DIM}
assert all(b - a == _SIZES[k] for k, (a, b) in BLOCKS.items()) and sum(_SIZES.values()) == DIM


@dataclass(frozen=True)
class BlockWeights:
    """Per-block weights applied after each block is unit-normalised.

    Defaults: the plot text dominates (~74% of a full vector's energy), genre ~15%,
    mood ~7%, metadata ~5%."""

    plot: float = 1.0
    genre: float = 0.45
    mood: float = 0.3
    metadata: float = 0.25

    def __post_init__(self) -> None:
        vals = self.as_dict()
        for k, v in vals.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"block weight {k}={v!r} must be a finite number >= 0")
        if not any(v > 0 for v in vals.values()):
            raise ValueError("at least one block weight must be > 0")

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    def fingerprint(self) -> str:
        """Short stable hash of the weights (part of every embedding hash)."""
        return _weights_fingerprint((("plot", float(self.plot)), ("genre", float(self.genre)),
                                     ("mood", float(self.mood)), ("metadata", float(self.metadata))))

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "BlockWeights":
        if not m:
            return cls()
        unknown = set(m) - set(BLOCKS)
        if unknown:
            raise ValueError(f"unknown block weight(s) {sorted(unknown)}; blocks are {list(BLOCKS)}")
        return cls(**{k: float(v) for k, v in m.items()})


@functools.lru_cache(maxsize=64)
def _weights_fingerprint(items: tuple[tuple[str, float], ...]) -> str:
    # cached: every row's hash needs it, and the weights of a run never change
    payload = json.dumps({k: repr(round(v, 9)) for k, v in items}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _clean(value: Any) -> str:
    if type(value) is str:  # the common case, without the checks below
        return " ".join(value.split())
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return " ".join(str(value).split())


def _keywords(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("[") or s.startswith("{"):
            try:
                parsed = json.loads("[" + s[1:-1] + "]" if s.startswith("{") else s)
                return [k for k in (_clean(x) for x in parsed) if k]
            except (json.JSONDecodeError, TypeError):
                pass
        return [k for k in (_clean(x) for x in s.split(",")) if k]
    out = []
    for x in value:
        if type(x) is str:
            k = " ".join(x.split())
            if k:
                out.append(k)
            continue
        if isinstance(x, Mapping):  # TMDB style {"id": .., "name": ..}
            x = x.get("name")
        k = _clean(x)
        if k:
            out.append(k)
    return out


def embedding_text(row: Mapping[str, Any]) -> str:
    """Plot-embedding input: ``"title. overview"`` + ``" Tagline: ..."`` + ``" Keywords: a, b"`` where present."""
    title = _clean(row.get("title")) or _clean(row.get("original_title"))
    overview = _clean(row.get("overview"))
    tagline = _clean(row.get("tagline"))
    kws = _keywords(row.get("keywords"))
    if title and overview:
        text = f"{title}. {overview}"
    else:
        text = title or overview
    if tagline:
        text += f" Tagline: {tagline}"
    if kws:
        text += f" Keywords: {', '.join(kws)}"
    return text.strip()


def mood_text(row: Mapping[str, Any]) -> str:
    """Text the mood block reads: overview, tagline and keywords."""
    parts = [_clean(row.get("overview")), _clean(row.get("tagline")), ", ".join(_keywords(row.get("keywords")))]
    return " ".join(p for p in parts if p)


def _as_2d(name: str, x: np.ndarray, width: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != width:
        raise ValueError(f"{name} block must have shape (n, {width}), got {np.asarray(x).shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} block contains NaN or inf")
    return a


def compose(plot: np.ndarray, genre: np.ndarray, mood: np.ndarray, metadata: np.ndarray,
            weights: BlockWeights = BlockWeights()) -> np.ndarray:
    """(n, 768) float32: each block unit-normalised (zero stays zero), weighted, whole row unit-normalised.

    1-D blocks are treated as one row.  A row whose blocks are all zero stays zero."""
    blocks = {
        "plot": _as_2d("plot", plot, PLOT_DIM),
        "genre": _as_2d("genre", genre, GENRE_BLOCK_DIM),
        "mood": _as_2d("mood", mood, MOOD_BLOCK_DIM),
        "metadata": _as_2d("metadata", metadata, METADATA_BLOCK_DIM),
    }
    n = {b.shape[0] for b in blocks.values()}
    if len(n) != 1:
        raise ValueError(f"blocks have different row counts: { {k: v.shape[0] for k, v in blocks.items()} }")
    out = np.zeros((n.pop(), DIM), dtype=np.float32)
    w = weights.as_dict()
    for name, (a, b) in BLOCKS.items():
        if w[name] > 0:
            out[:, a:b] = l2_normalize_rows(blocks[name]) * np.float32(w[name])
    return l2_normalize_rows(out)


def split_blocks(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Views of each block of (n, 768) or (768,) vectors."""
    v = np.asarray(vectors)
    return {k: v[..., a:b] for k, (a, b) in BLOCKS.items()}


def _plot_block(texts: Sequence[str], provider: EmbeddingProvider, enabled: bool) -> np.ndarray:
    out = np.zeros((len(texts), PLOT_DIM), dtype=np.float32)
    idx = [i for i, t in enumerate(texts) if t.strip()]
    if not enabled or not idx:
        return out  # no call to the provider
    vecs = np.asarray(provider.embed([texts[i] for i in idx]), dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(idx):
        raise ValueError(f"provider {provider.model_id} returned shape {vecs.shape} for {len(idx)} texts")
    if vecs.shape[1] != PLOT_DIM:
        raise EmbeddingDimensionError(getattr(provider, "model", "?"), PLOT_DIM, int(vecs.shape[1]),
                                      detail=f"provider {provider.model_id}")
    out[idx] = vecs
    return out


def build_content_vectors(rows: Sequence[Mapping[str, Any]], provider: EmbeddingProvider,
                          weights: BlockWeights = BlockWeights()) -> np.ndarray:
    """(n, 768) float32 hybrid vectors for ``dim_content`` rows.

    One ``provider.embed`` call for all rows with text (none when ``rows`` is empty,
    no row has text, or ``weights.plot == 0``)."""
    rows = list(rows)
    if not rows:
        return np.zeros((0, DIM), dtype=np.float32)
    texts = [embedding_text(r) for r in rows]
    plot = _plot_block(texts, provider, weights.plot > 0)
    genre_ids = [r.get("genre_ids") for r in rows]
    genre = genre_blocks(genre_ids)
    mood = mood_blocks(genre_ids, [mood_text(r) for r in rows])
    meta = metadata_blocks(rows)
    return compose(plot, genre, mood, meta, weights)


@dataclass
class QueryIntent:
    """What a search asks for. ``mood`` maps feature names (``"energy"``, ``"intensity"``,
    ``"tone.dark"``, ``"space"``, ...; see :func:`.mood_features.mood_slot`) to levels in [0, 1]; they
    override the mood derived from the query's genres and text."""

    text: str = ""
    genre_ids: Sequence[int] = ()
    mood: Mapping[str, float] | None = None
    year: int | None = None
    min_rating: float | None = None
    media_type: str | None = None
    language: str | None = None


def build_query_vector(intent: QueryIntent, provider: EmbeddingProvider,
                       weights: BlockWeights = BlockWeights()) -> np.ndarray:
    """(768,) float32 unit query vector from the same builder as content vectors.

    * plot: ``provider.embed([text])`` when ``text`` is non-blank, else zero (no call);
    * genre: :func:`genre_block` of ``genre_ids`` (TV/movie aliases included);
    * mood: derived from ``genre_ids`` + ``text`` like content, then explicit ``mood`` levels set;
    * metadata: year / minimum rating / media type / language when given (others zero).

    Raises ``ValueError`` when the intent is empty (a zero vector cannot rank anything)."""
    text = _clean(intent.text)
    plot = _plot_block([text], provider, weights.plot > 0)
    genre = genre_block(intent.genre_ids)
    mood = mood_block(intent.genre_ids, text)
    for name, level in (intent.mood or {}).items():
        lv = float(level)
        if not math.isfinite(lv):
            raise ValueError(f"mood level for {name!r} must be finite, got {level!r}")
        mood[mood_slot(name)] = min(max(lv, 0.0), 1.0)
    meta = query_metadata_block(year=intent.year, min_rating=intent.min_rating, media_type=intent.media_type,
                                language=intent.language)
    vec = compose(plot, genre, mood, meta, weights)[0]
    if not np.any(vec):
        raise EmptyQueryError("empty query intent: give text, genres, mood, year, min_rating, media_type or language "
                         "(with a non-zero weight on its block)")
    return vec
