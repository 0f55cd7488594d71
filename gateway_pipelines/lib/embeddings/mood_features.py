"""The 64-d mood block: four 16-wide bands, ``energy``, ``tone``, ``intensity`` and ``era``.

Each slot is a named feature in [0, 1] (see :data:`~.mood_vocabulary.MOOD_FEATURES`) scored from
genres (:data:`~.mood_vocabulary.MOOD_GENRES`) and words in the overview/tagline/keywords
(:data:`~.mood_vocabulary.MOOD_WORDS`), combined as a probabilistic OR:
``1 - (1 - genre_score) * (1 - word_score)``.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

import numpy as np

from .genre_features import expand_genres
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
    import unicodedata

    t = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode().lower()
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
    out = np.zeros(MOOD_BLOCK_DIM, dtype=np.float64)
    genres = expand_genres(genre_ids)
    tokens = tokenize(text)
    joined = " " + " ".join(tokens) + " "
    word: dict[str, float] = {}
    if tokens:
        for key, m in _MATCHERS.items():
            h = m.hits(tokens, joined)
            if h:
                word[key] = _word_score(h)
        era_hits: dict[str, int] = {}
        for t in tokens:
            mm = _YEAR_RE.match(t)
            if mm:
                era = _era_of_year(int(mm.group(1)))
                era_hits[era] = era_hits.get(era, 0) + 1
        for era, h in era_hits.items():
            word[era] = 1.0 - (1.0 - word.get(era, 0.0)) * (1.0 - _word_score(h))
    for key, slot in _SLOT_OF.items():
        if key.endswith(".level"):
            continue
        g = max((genres.get(gid, 0.0) * s for gid, s in MOOD_GENRES.get(key, {}).items()), default=0.0)
        w = word.get(key, 0.0)
        out[slot] = 1.0 - (1.0 - g) * (1.0 - w)
    for band, gmap in MOOD_LEVEL_GENRES.items():
        g = max((genres.get(gid, 0.0) * s for gid, s in gmap.items()), default=0.0)
        w = max((v for k, v in word.items() if k.startswith(band + ".") and k not in _LEVEL_EXCLUDE), default=0.0)
        out[_SLOT_OF[f"{band}.level"]] = 1.0 - (1.0 - g) * (1.0 - _LEVEL_WORD_SHARE * w)
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

