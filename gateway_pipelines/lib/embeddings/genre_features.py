"""The 64-d genre block: one slot per TMDB genre, so movie and TV titles meet on shared genres.

Slots 0..26 are the 27 TMDB genre ids of :mod:`gateway_pipelines.lib.tmdb.genres` (movie and TV),
sorted by id; slots 27..63 are reserved (always 0).  TV compound genres also light their movie
counterparts at :data:`GENRE_ALIAS_WEIGHT`, so a "Sci-Fi & Fantasy" series is near a "Science
Fiction" film.

The slot of a genre is its rank among the sorted ids, and stored vectors keep that position: a
change to the TMDB table moves slots, so it must come with a new ``HASH_VERSION`` (hashing.py).
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

import numpy as np

from gateway_pipelines.lib.tmdb.genres import ALL_GENRE_IDS, ALL_GENRES

__all__ = [
    "GENRE_BLOCK_DIM",
    "GENRE_NAMES",
    "GENRE_IDS",
    "GENRE_SLOTS",
    "GENRE_ALIASES",
    "GENRE_ALIAS_WEIGHT",
    "as_genre_ids",
    "expand_genres",
    "genre_block",
    "genre_blocks",
]

GENRE_BLOCK_DIM = 64

GENRE_NAMES: dict[int, str] = ALL_GENRES
GENRE_IDS: tuple[int, ...] = ALL_GENRE_IDS
#: genre id -> slot (0..26) inside the 64-wide genre block
GENRE_SLOTS: dict[int, int] = {gid: i for i, gid in enumerate(GENRE_IDS)}
if len(GENRE_SLOTS) > GENRE_BLOCK_DIM:
    raise ImportError(f"{len(GENRE_SLOTS)} TMDB genres do not fit the {GENRE_BLOCK_DIM}-d genre block")

GENRE_ALIAS_WEIGHT = 0.5
#: TV compound / TV-only genres -> movie counterparts they also light (at the given weight)
GENRE_ALIASES: dict[int, dict[int, float]] = {
    10759: {28: GENRE_ALIAS_WEIGHT, 12: GENRE_ALIAS_WEIGHT},  # Action & Adventure -> Action, Adventure
    10765: {878: GENRE_ALIAS_WEIGHT, 14: GENRE_ALIAS_WEIGHT},  # Sci-Fi & Fantasy -> Science Fiction, Fantasy
    10768: {10752: GENRE_ALIAS_WEIGHT},  # War & Politics -> War
    10762: {10751: GENRE_ALIAS_WEIGHT},  # Kids -> Family
    10766: {18: GENRE_ALIAS_WEIGHT},  # Soap -> Drama
}


def as_genre_ids(value: Any) -> list[int]:
    """Coerce a genre-id field (list/tuple/ndarray, JSON '[28, 12]', Postgres '{28,12}', None) to ints."""
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        if s.startswith("{") and s.endswith("}"):
            s = "[" + s[1:-1] + "]"
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            value = re.findall(r"-?\d+", s)
        if isinstance(value, (int, float)):
            value = [value]
    if isinstance(value, (int, np.integer)):
        value = [value]
    out: list[int] = []
    for v in value:
        if v is None:
            continue
        if isinstance(v, Mapping):  # TMDB style {"id": 28, "name": "Action"}
            v = v.get("id")
            if v is None:
                continue
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            continue
    return out


def expand_genres(genre_ids: Any) -> dict[int, float]:
    """Genre id -> weight: 1.0 for listed ids, alias weight for counterparts of TV compound genres.

    Unknown ids are dropped."""
    weights: dict[int, float] = {}
    for gid in as_genre_ids(genre_ids):
        if gid not in GENRE_SLOTS:
            continue
        weights[gid] = 1.0
    for gid in list(weights):
        for alias, w in GENRE_ALIASES.get(gid, {}).items():
            weights[alias] = max(weights.get(alias, 0.0), w)
    return weights


def genre_block(genre_ids: Any) -> np.ndarray:
    """(64,) float32: 1.0 in each listed genre's slot, alias weight in movie counterparts of TV genres."""
    out = np.zeros(GENRE_BLOCK_DIM, dtype=np.float32)
    for gid, w in expand_genres(genre_ids).items():
        out[GENRE_SLOTS[gid]] = w
    return out


def genre_blocks(genre_ids: Sequence[Any]) -> np.ndarray:
    """(n, 64) float32: :func:`genre_block` of each genre-id field."""
    out = np.zeros((len(genre_ids), GENRE_BLOCK_DIM), dtype=np.float32)
    for i, g in enumerate(genre_ids):
        for gid, w in expand_genres(g).items():
            out[i, GENRE_SLOTS[gid]] = w
    return out
