"""The 64-d mood block: four 16-wide bands, ``energy``, ``tone``, ``intensity`` and ``era``.

Each slot is a named feature in [0, 1] (see :data:`~.mood_vocabulary.MOOD_FEATURES`) scored from
genres (:data:`~.mood_vocabulary.MOOD_GENRES`) and words in the overview/tagline/keywords
(:data:`~.mood_vocabulary.MOOD_WORDS`), combined as a probabilistic OR:
``1 - (1 - genre_score) * (1 - word_score)``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterable, Sequence

import numpy as np

from .genre_features import GENRE_SLOTS, expand_genres
from .mood_vocabulary import (
    MOOD_BAND_WIDTH,
    MOOD_BANDS,
    MOOD_FEATURES,
    MOOD_GENRES,
    MOOD_LEVEL_GENRES,
    MOOD_WORDS,
)

__all__ = [
    "MOOD_BLOCK_DIM",
    "mood_slot",
    "mood_block",
    "mood_blocks",
    "explain_mood",
    "tokenize",
]

MOOD_BLOCK_DIM = 64

# word hits in other features of the band lift the ``level`` slot at most this much
_LEVEL_WORD_SHARE = 0.8
# features that do not raise the band level (they mean *low* energy/intensity)
_LEVEL_EXCLUDE = {"energy.calm", "energy.everyday", "intensity.light", "intensity.intimate"}

_TOKEN_RE = re.compile(r"[a-z0-9]+")
_SLOT_OF: dict[str, int] = {}
for _b, _band in enumerate(MOOD_BANDS):
    for _i, _name in enumerate(MOOD_FEATURES[_band]):
        _SLOT_OF[f"{_band}.{_name}"] = _b * MOOD_BAND_WIDTH + _i
assert len(_SLOT_OF) == MOOD_BLOCK_DIM
assert all(k in _SLOT_OF for k in MOOD_WORDS) and all(k in _SLOT_OF for k in MOOD_GENRES)


def tokenize(text: str | None) -> list[str]:
    if not text:
        return []
    t = str(text)
    # NFKD + dropping non-ASCII leaves ASCII text as it is: skip the normalisation for most plots
    t = t.lower() if t.isascii() else unicodedata.normalize("NFKD", t).encode("ascii", "ignore").decode().lower()
    return _TOKEN_RE.findall(t.replace("'", ""))


def _inflections(word: str) -> set[str]:
    forms = {word, word + "s", word + "es", word + "ed", word + "ing", word + "er", word + "ers"}
    if word.endswith("e"):
        forms |= {word + "d", word[:-1] + "ing", word + "r", word + "rs"}
    if word.endswith("y") and len(word) > 2:
        forms |= {word[:-1] + "ies", word[:-1] + "ied"}
    return forms


class _Matcher:
    def __init__(self, entries: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.prefixes: list[str] = []
        self.phrases: list[str] = []
        for e in entries:
            e = e.lower().strip()
            if e.endswith("*"):
                self.prefixes.append(e[:-1])
            elif " " in e or "-" in e:
                self.phrases.append(" " + " ".join(_TOKEN_RE.findall(e)) + " ")
            else:
                self.exact |= _inflections(e)

    def hits(self, tokens: Sequence[str], joined: str) -> int:
        n = sum(1 for t in tokens if t in self.exact or any(t.startswith(p) for p in self.prefixes))
        n += sum(joined.count(p) for p in self.phrases)
        return n


_MATCHERS: dict[str, _Matcher] = {k: _Matcher(v) for k, v in MOOD_WORDS.items()}

# explicit years / decades in text -> era feature
_YEAR_RE = re.compile(r"^(1[6-9][0-9]{2}|20[0-9]{2}|21[0-9]{2})s?$")  # 1600..2199, or a decade like 1920s


def _era_of_year(y: int) -> str:
    if y < 500:
        return "era.ancient"
    if y < 1600:
        return "era.medieval"
    if y < 1900:
        return "era.early_modern"
    if y < 1946:
        return "era.early_20th"
    if y < 1980:
        return "era.mid_century"
    if y < 2000:
        return "era.late_20th"
    if y < 2040:
        return "era.contemporary"
    return "era.future"


def _word_score(hits: float) -> float:
    """Saturating: 1 hit -> 0.5, 2 -> 0.75, 3 -> 0.875."""
    return 1.0 - 0.5 ** hits if hits > 0 else 0.0


def mood_slot(name: str) -> int:
    """Slot (0..63) of a mood feature: ``"band.feature"``, a unique ``"feature"`` or a band name (its
    ``level`` slot, for ``energy`` and ``intensity``)."""
    key = name.strip().lower()
    if key in _SLOT_OF:
        return _SLOT_OF[key]
    if key in MOOD_BANDS:
        if f"{key}.level" in _SLOT_OF:
            return _SLOT_OF[f"{key}.level"]
        raise KeyError(f"mood band {key!r} has no single level; name one of its features: "
                       f"{', '.join(key + '.' + f for f in MOOD_FEATURES[key])}")
    matches = [k for k in _SLOT_OF if k.split(".", 1)[1] == key]
    if len(matches) == 1:
        return _SLOT_OF[matches[0]]
    if matches:
        raise KeyError(f"ambiguous mood feature {name!r}: use one of {matches}")
    raise KeyError(f"unknown mood feature {name!r}; valid: {sorted(_SLOT_OF)} or band names {MOOD_BANDS}")


def mood_block(genre_ids: Any, text: str | None) -> np.ndarray:
    """(64,) float32 in [0, 1]: energy | tone | intensity | era bands, 16 named features each."""
    return mood_blocks([genre_ids], [text])[0]


# ---------------------------------------------------------------- batch scoring
# The per-title work is a token loop with one dict lookup per token (what a token matches is cached:
# the vocabulary of a catalogue is small next to its token count) and a phrase test only for phrases
# whose first word occurs. Genre scores and the probabilistic OR run over the whole batch in numpy,
# with the same float64 operations in the same order as the scalar formula, so vectors are unchanged.
_KEYS: tuple[str, ...] = tuple(_MATCHERS)
_KEY_INDEX = {k: i for i, k in enumerate(_KEYS)}
_ERA_KEYS: tuple[str, ...] = tuple(f"era.{f}" for f in MOOD_FEATURES["era"])
_PHRASES_BY_FIRST: dict[str, list[tuple[str, int]]] = {}
for _k, _m in _MATCHERS.items():
    for _p in _m.phrases:
        _PHRASES_BY_FIRST.setdefault(_p.split()[0], []).append((_p, _KEY_INDEX[_k]))
_TOKEN_CACHE_MAX = 500_000
_N_KEYS = len(_KEYS)
_ERA_CELL = {era: _N_KEYS + j for j, era in enumerate(_ERA_KEYS)}  # era hits counted after the matcher keys
_token_cache: dict[str, tuple[int, ...]] = {}


def _token_hits(tok: str) -> tuple[int, ...]:
    """Cells a token hits: matcher indices (exact form or prefix; at most once each), then its era cell
    when it is a year. Cached, as a catalogue's vocabulary is small next to its token count."""
    hit = tuple(i for i, k in enumerate(_KEYS)
                if tok in _MATCHERS[k].exact or any(tok.startswith(p) for p in _MATCHERS[k].prefixes))
    mm = _YEAR_RE.match(tok)
    if mm:
        hit += (_ERA_CELL[_era_of_year(int(mm.group(1)))],)
    if len(_token_cache) >= _TOKEN_CACHE_MAX:  # bounded: memory stays flat on any catalogue
        _token_cache.clear()
    _token_cache[tok] = hit
    return hit


def _genre_score_matrix(table: dict[str, dict[int, float]], keys: Sequence[str]) -> np.ndarray:
    """(27 genre slots, len(keys)) of genre -> feature scores (0 where a genre does not score it)."""
    out = np.zeros((len(GENRE_SLOTS), len(keys)), dtype=np.float64)
    for j, key in enumerate(keys):
        for gid, s in table.get(key, {}).items():
            if gid in GENRE_SLOTS:
                out[GENRE_SLOTS[gid], j] = s
    return out


_KEY_SLOTS = np.array([_SLOT_OF[k] for k in _KEYS], dtype=np.int64)
_ERA_SLOTS = np.array([_SLOT_OF[k] for k in _ERA_KEYS], dtype=np.int64)
_FEATURE_KEYS: tuple[str, ...] = tuple(k for k in _SLOT_OF if not k.endswith(".level"))
_FEATURE_SLOTS = np.array([_SLOT_OF[k] for k in _FEATURE_KEYS])
_LEVEL_BANDS: tuple[str, ...] = tuple(MOOD_LEVEL_GENRES)
_LEVEL_SLOTS = np.array([_SLOT_OF[f"{b}.level"] for b in _LEVEL_BANDS])
_FEATURE_GENRES = _genre_score_matrix(MOOD_GENRES, _FEATURE_KEYS)
_LEVEL_GENRES = _genre_score_matrix({b: MOOD_LEVEL_GENRES[b] for b in _LEVEL_BANDS}, _LEVEL_BANDS)
# word-score columns (in _SLOT_OF order) that raise each band's level
_LEVEL_WORD_COLUMNS = [np.array([_SLOT_OF[k] for k in _SLOT_OF if k.startswith(b + ".") and k not in _LEVEL_EXCLUDE],
                                dtype=np.int64) for b in _LEVEL_BANDS]


def _max_genre_score(weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """max over genres of weight * score (0 without a scoring genre): the scalar formula's ``max(..., default=0)``."""
    out = np.zeros((weights.shape[0], scores.shape[1]), dtype=np.float64)
    for g in np.flatnonzero(scores.any(axis=1)):
        col = weights[:, g]
        if col.any():
            np.maximum(out, col[:, None] * scores[g][None, :], out=out)
    return out


def _genre_weight_matrix(genre_ids: Sequence[Any]) -> np.ndarray:
    w = np.zeros((len(genre_ids), len(GENRE_SLOTS)), dtype=np.float64)
    seen: dict[tuple, list[tuple[int, float]]] = {}  # a catalogue has few distinct genre lists
    for i, g in enumerate(genre_ids):
        key = tuple(g) if isinstance(g, (list, tuple)) and all(type(x) is int for x in g) else None
        cells = seen.get(key) if key is not None else None
        if cells is None:
            cells = [(GENRE_SLOTS[gid], v) for gid, v in expand_genres(g).items()]
            if key is not None:
                seen[key] = cells
        for slot, v in cells:
            w[i, slot] = v
    return w


def mood_blocks(genre_ids: Sequence[Any], texts: Sequence[str | None]) -> np.ndarray:
    """(n, 64) float32: :func:`mood_block` of each (genre ids, text) pair, scored as one batch."""
    n = len(texts)
    if len(genre_ids) != n:
        raise ValueError(f"mood_blocks: {len(genre_ids)} genre lists for {n} texts")
    width = _N_KEYS + len(_ERA_KEYS)
    cells: list[int] = []
    get = _token_cache.get
    for i, text in enumerate(texts):
        tokens = tokenize(text)
        if not tokens:
            continue
        base = i * width
        for t in tokens:
            h = get(t)
            if h is None:
                h = _token_hits(t)
            if h:
                cells.extend([base + k for k in h])
        firsts = _PHRASES_BY_FIRST.keys() & set(tokens)
        if firsts:
            joined = " " + " ".join(tokens) + " "
            for f in firsts:
                for phrase, k in _PHRASES_BY_FIRST[f]:
                    c = joined.count(phrase)
                    if c:
                        cells.extend([base + k] * c)
    counts = np.bincount(np.asarray(cells, dtype=np.int64), minlength=n * width).reshape(n, width)
    counts = counts.astype(np.float64)
    word = np.zeros((n, MOOD_BLOCK_DIM), dtype=np.float64)  # word score by slot (0 = no hit)
    keys = counts[:, :_N_KEYS]
    word[:, _KEY_SLOTS] = np.where(keys > 0, 1.0 - 0.5 ** keys, 0.0)
    eras = counts[:, _N_KEYS:]
    if eras.any():  # a year in the text: OR-ed into its era slot after the word score
        era_score = np.where(eras > 0, 1.0 - 0.5 ** eras, 0.0)
        word[:, _ERA_SLOTS] = np.where(eras > 0, 1.0 - (1.0 - word[:, _ERA_SLOTS]) * (1.0 - era_score),
                                       word[:, _ERA_SLOTS])
    genres = _genre_weight_matrix(genre_ids)
    out = np.zeros((n, MOOD_BLOCK_DIM), dtype=np.float64)
    g = _max_genre_score(genres, _FEATURE_GENRES)
    out[:, _FEATURE_SLOTS] = 1.0 - (1.0 - g) * (1.0 - word[:, _FEATURE_SLOTS])
    g = _max_genre_score(genres, _LEVEL_GENRES)
    for j, cols in enumerate(_LEVEL_WORD_COLUMNS):
        w = word[:, cols].max(axis=1) if cols.size else np.zeros(n)
        out[:, _LEVEL_SLOTS[j]] = 1.0 - (1.0 - g[:, j]) * (1.0 - _LEVEL_WORD_SHARE * w)
    return out.astype(np.float32)


def explain_mood(vec: np.ndarray, *, threshold: float = 0.05) -> dict[str, float]:
    """Named non-trivial features of a mood block (or of a full 768-d vector's mood slice)."""
    v = np.asarray(vec, dtype=np.float32).ravel()
    if v.shape[0] == 768:  # hybrid.BLOCKS["mood"]; hybrid imports this module, so not imported from there
        v = v[576:640]
    if v.shape[0] != MOOD_BLOCK_DIM:
        raise ValueError(f"expected a 64-d mood block or a 768-d vector, got {v.shape[0]}")
    return {k: round(float(v[s]), 3) for k, s in sorted(_SLOT_OF.items(), key=lambda kv: -v[kv[1]])
            if abs(v[s]) >= threshold}

