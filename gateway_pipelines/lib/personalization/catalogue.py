"""The catalogue as the personalization code sees it: keys, unit content vectors and served columns.

Read from `vectors.content_vectors` (the search-serving table), so preference vectors live in exactly
the space of the content vectors (768-d), and an event's content key is valid iff search can serve it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import psycopg

CATALOGUE_SQL = """
SELECT id, vector, title, genre_ids, coalesce(year, 0), coalesce(vote_average, 0),
       coalesce((metadata->>'popularity')::float8, 0), coalesce((metadata->>'runtime')::float8, 0),
       coalesce(metadata->'genre_names', '[]'::jsonb)
FROM vectors.content_vectors
ORDER BY id
"""


@dataclass
class Catalogue:
    keys: list[str]
    vectors: np.ndarray  # (n, dim) float32, unit rows
    titles: list[str]
    genres: list[tuple[int, ...]]
    years: np.ndarray
    vote_average: np.ndarray
    popularity: np.ndarray  # TMDB popularity (catalogue prior)
    runtime: np.ndarray  # minutes (0 unknown)
    genre_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.vectors /= np.where(norms == 0, 1, norms)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @cached_property
    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    @cached_property
    def key_set(self) -> frozenset[str]:
        return frozenset(self.keys)

    @cached_property
    def genre_ids(self) -> list[int]:
        return sorted({g for gs in self.genres for g in gs})

    @cached_property
    def genre_matrix(self) -> np.ndarray:
        """(n, G) 0/1 float32: title i has genre genre_ids[g]."""
        col = {g: j for j, g in enumerate(self.genre_ids)}
        m = np.zeros((len(self), len(col)), dtype=np.float32)
        for i, gs in enumerate(self.genres):
            for g in gs:
                m[i, col[g]] = 1.0
        return m

    @cached_property
    def genre_sets(self) -> list[frozenset[int]]:
        return [frozenset(g) for g in self.genres]

    @cached_property
    def popularity_prior(self) -> np.ndarray:
        """log-popularity scaled to [0, 1]."""
        lp = np.log1p(np.maximum(self.popularity, 0))
        top = float(lp.max()) if len(lp) else 0.0
        return (lp / top).astype(np.float32) if top > 0 else np.zeros(len(self), dtype=np.float32)

    def genre_label(self, genre_id: int) -> str:
        return self.genre_names.get(genre_id, str(genre_id))


def as_array(value) -> np.ndarray:
    """A pgvector value (numpy array, pgvector.Vector or text) as float32."""
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    elif isinstance(value, str):
        value = [float(x) for x in value.strip("[]").split(",")]
    return np.asarray(value, dtype=np.float32)


def load_catalogue(conn: psycopg.Connection, *, binary: bool = False) -> Catalogue:
    """`binary` reads the rows in binary (the connection must know pgvector's types): the text parser
    costs about 1 ms a vector (100 s for 100k titles), the binary loader is one `frombuffer`."""
    with conn.cursor(binary=binary) as cur:
        rows = cur.execute(CATALOGUE_SQL).fetchall()
    names: dict[int, str] = {}
    for row in rows:
        for g, n in zip(row[3] or [], row[8] or []):
            names.setdefault(int(g), str(n))
    if not rows:
        return Catalogue([], np.zeros((0, 768), np.float32), [], [], np.zeros(0), np.zeros(0), np.zeros(0),
                         np.zeros(0), names)
    return Catalogue(
        keys=[r[0] for r in rows],
        vectors=np.stack([as_array(r[1]) for r in rows]),
        titles=[r[2] for r in rows],
        genres=[tuple(int(g) for g in (r[3] or ())) for r in rows],
        years=np.array([r[4] for r in rows], dtype=np.float64),
        vote_average=np.array([r[5] for r in rows], dtype=np.float64),
        popularity=np.array([r[6] for r in rows], dtype=np.float64),
        runtime=np.array([r[7] for r in rows], dtype=np.float64),
        genre_names=names,
    )


def catalogue_keys(conn: psycopg.Connection) -> frozenset[str]:
    return frozenset(r[0] for r in conn.execute("SELECT id FROM vectors.content_vectors"))
