"""The 128-d metadata block: year, rating, votes, popularity, runtime, media type, language.

Layout in :data:`METADATA_LAYOUT`.  Numeric fields are encoded with Gaussian radial basis
functions over fixed centres (so the dot product measures *closeness* of e.g. two years, rather
than favouring large values); each field group is L2-normalised to unit length and multiplied by
:data:`METADATA_GROUP_WEIGHTS`.  Missing fields leave their group at zero.
:func:`query_metadata_block` fills the same layout from a search intent (year, minimum rating,
media type, language).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "METADATA_BLOCK_DIM",
    "METADATA_FIELDS",
    "METADATA_LAYOUT",
    "METADATA_GROUP_WEIGHTS",
    "LANGUAGES",
    "metadata_block",
    "metadata_blocks",
    "query_metadata_block",
    "row_year",
]

METADATA_BLOCK_DIM = 128

#: the row keys :func:`metadata_block` reads (``release_date`` only when ``year`` is missing)
METADATA_FIELDS: tuple[str, ...] = ("year", "release_date", "vote_average", "vote_count", "popularity", "runtime",
                                    "media_type", "original_language")

#: 30 common TMDB ``original_language`` codes with their own slot ("cn" is TMDB's Cantonese)
LANGUAGES: tuple[str, ...] = (
    "en", "fr", "es", "de", "it", "ja", "ko", "zh", "cn", "hi", "ru", "pt", "sv", "da", "no",
    "nl", "pl", "tr", "th", "fa", "ar", "he", "id", "tl", "te", "ta", "ml", "fi", "el", "hu",
)
MEDIA_TYPES: tuple[str, ...] = ("movie", "tv")

#: slot layout of the 128-d metadata block: name -> (start, stop)
METADATA_LAYOUT: dict[str, tuple[int, int]] = {
    "year": (0, 16),  # RBF, 16 centres 1900..2035 (9-year spacing); year < 1900 / > 2035 clipped
    "vote_average": (16, 28),  # RBF, 12 centres 1..10; only when vote_count > 0; scaled by vote confidence
    "log_vote_count": (28, 40),  # RBF over log1p(vote_count), 12 centres 0..log1p(50_000)
    "log_popularity": (40, 52),  # RBF over log1p(popularity), 12 centres 0..log1p(2_000)
    "runtime": (52, 64),  # RBF over minutes, 12 centres 0..240; missing/0 -> zero
    "media_type": (64, 66),  # one-hot: movie, tv
    "language": (66, 96),  # one-hot over LANGUAGES
    "language_other": (96, 97),  # any other (non-empty) language code
    "reserved": (97, 128),  # always 0
}
#: each group is unit-normalised then multiplied by its weight
METADATA_GROUP_WEIGHTS: dict[str, float] = {
    "year": 1.0, "vote_average": 0.8, "log_vote_count": 0.5, "log_popularity": 0.5, "runtime": 0.5,
    "media_type": 0.7, "language": 0.8, "language_other": 0.8,
}

_RBF_CENTRES: dict[str, np.ndarray] = {
    "year": np.linspace(1900.0, 2035.0, 16),
    "vote_average": np.linspace(1.0, 10.0, 12),
    "log_vote_count": np.linspace(0.0, math.log1p(50_000), 12),
    "log_popularity": np.linspace(0.0, math.log1p(2_000), 12),
    "runtime": np.linspace(0.0, 240.0, 12),
}
_RATING_CONFIDENCE_VOTES = 50  # vote_average at full weight from this many votes
_YEAR_FROM_DATE = re.compile(r"^\s*(\d{4})")


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def row_year(row: Mapping[str, Any]) -> int | None:
    """``row['year']``, else the year of ``row['release_date']`` (date or 'YYYY-MM-DD')."""
    y = _num(row.get("year"))
    if y is not None and y > 0:
        return int(y)
    rd = row.get("release_date")
    if rd is None:
        return None
    if hasattr(rd, "year"):
        return int(rd.year)
    m = _YEAR_FROM_DATE.match(str(rd))
    return int(m.group(1)) if m else None


def _rbf(name: str, x: float) -> np.ndarray:
    c = _RBF_CENTRES[name]
    sigma = float(c[1] - c[0])
    x = min(max(x, float(c[0])), float(c[-1]))
    v = np.exp(-0.5 * ((c - x) / sigma) ** 2)
    return v / np.linalg.norm(v)


def _at_least(name: str, threshold: float) -> np.ndarray:
    """Soft step over the RBF centres: high for centres >= threshold (for 'minimum rating' queries)."""
    c = _RBF_CENTRES[name]
    sigma = float(c[1] - c[0])
    v = 1.0 / (1.0 + np.exp(-(c - threshold) / (0.5 * sigma)))
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def _put(out: np.ndarray, group: str, values: np.ndarray, scale: float = 1.0) -> None:
    a, b = METADATA_LAYOUT[group]
    out[a:b] = values * METADATA_GROUP_WEIGHTS[group] * scale


def _norm_code(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def _put_media_and_language(out: np.ndarray, media_type: Any, language: Any) -> None:
    mt = _norm_code(media_type)
    if mt in MEDIA_TYPES:
        v = np.zeros(2)
        v[MEDIA_TYPES.index(mt)] = 1.0
        _put(out, "media_type", v)
    lang = _norm_code(language)
    if lang in LANGUAGES:
        v = np.zeros(len(LANGUAGES))
        v[LANGUAGES.index(lang)] = 1.0
        _put(out, "language", v)
    elif lang and lang not in {"xx", "none", "null"}:
        _put(out, "language_other", np.ones(1))


def metadata_block(row: Mapping[str, Any]) -> np.ndarray:
    """(128,) float32 metadata features of a ``dim_content`` row; None-safe. Layout: :data:`METADATA_LAYOUT`."""
    out = np.zeros(METADATA_BLOCK_DIM, dtype=np.float64)
    year = row_year(row)
    if year is not None:
        _put(out, "year", _rbf("year", float(year)))
    votes = _num(row.get("vote_count"))
    avg = _num(row.get("vote_average"))
    if avg is not None and avg > 0 and (votes is None or votes > 0):
        conf = 1.0 if votes is None else min(1.0, math.log1p(votes) / math.log1p(_RATING_CONFIDENCE_VOTES))
        _put(out, "vote_average", _rbf("vote_average", avg), conf)
    if votes is not None and votes >= 0:
        _put(out, "log_vote_count", _rbf("log_vote_count", math.log1p(votes)))
    pop = _num(row.get("popularity"))
    if pop is not None and pop >= 0:
        _put(out, "log_popularity", _rbf("log_popularity", math.log1p(pop)))
    runtime = _num(row.get("runtime"))
    if runtime is not None and runtime > 0:
        _put(out, "runtime", _rbf("runtime", runtime))
    _put_media_and_language(out, row.get("media_type"), row.get("original_language"))
    return out.astype(np.float32)


def _rbf_rows(name: str, x: np.ndarray) -> np.ndarray:
    """:func:`_rbf` of each value of ``x``, as rows: the same float64 operations elementwise, and each
    row's norm from ``dot`` as ``np.linalg.norm`` takes it, so the rows equal the scalar results."""
    c = _RBF_CENTRES[name]
    sigma = float(c[1] - c[0])
    x = np.minimum(np.maximum(x, float(c[0])), float(c[-1]))
    v = np.exp(-0.5 * ((c[None, :] - x[:, None]) / sigma) ** 2)
    norms = np.array([r.dot(r) for r in v], dtype=np.float64)
    return v / np.sqrt(norms)[:, None]


def metadata_blocks(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """(n, 128) float32: :func:`metadata_block` of each row, the RBF groups computed over the batch."""
    n = len(rows)
    out = np.zeros((n, METADATA_BLOCK_DIM), dtype=np.float64)
    fields: dict[str, tuple[list[int], list[float], list[float]]] = {
        k: ([], [], []) for k in ("year", "vote_average", "log_vote_count", "log_popularity", "runtime")}

    def add(group: str, i: int, x: float, scale: float = 1.0) -> None:
        idx, xs, scales = fields[group]
        idx.append(i)
        xs.append(x)
        scales.append(scale)

    for i, row in enumerate(rows):
        year = row_year(row)
        if year is not None:
            add("year", i, float(year))
        votes = _num(row.get("vote_count"))
        avg = _num(row.get("vote_average"))
        if avg is not None and avg > 0 and (votes is None or votes > 0):
            conf = 1.0 if votes is None else min(1.0, math.log1p(votes) / math.log1p(_RATING_CONFIDENCE_VOTES))
            add("vote_average", i, avg, conf)
        if votes is not None and votes >= 0:
            add("log_vote_count", i, math.log1p(votes))
        pop = _num(row.get("popularity"))
        if pop is not None and pop >= 0:
            add("log_popularity", i, math.log1p(pop))
        runtime = _num(row.get("runtime"))
        if runtime is not None and runtime > 0:
            add("runtime", i, runtime)
        _put_media_and_language(out[i], row.get("media_type"), row.get("original_language"))
    for group, (idx, xs, scales) in fields.items():
        if not idx:
            continue
        a, b = METADATA_LAYOUT[group]
        values = _rbf_rows(group, np.asarray(xs, dtype=np.float64)) * METADATA_GROUP_WEIGHTS[group]
        out[np.asarray(idx), a:b] = values * np.asarray(scales, dtype=np.float64)[:, None]
    return out.astype(np.float32)


def query_metadata_block(*, year: int | None = None, min_rating: float | None = None,
                         media_type: str | None = None, language: str | None = None) -> np.ndarray:
    """(128,) float32 metadata block for a search intent; unspecified groups stay zero."""
    out = np.zeros(METADATA_BLOCK_DIM, dtype=np.float64)
    y = _num(year)
    if y is not None and y > 0:
        _put(out, "year", _rbf("year", y))
    r = _num(min_rating)
    if r is not None and r > 0:
        _put(out, "vote_average", _at_least("vote_average", r))
    _put_media_and_language(out, media_type, language)
    return out.astype(np.float32)
