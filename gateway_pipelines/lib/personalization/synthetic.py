"""A synthetic catalogue (clustered unit vectors with genres and popularity) for tests and the bench.

Titles come in clusters, like real embeddings; each cluster has one or two genres of its own, so
content similarity and genres agree as they do in the hybrid vectors. Deterministic per seed.
"""

from __future__ import annotations

import numpy as np

from .catalogue import Catalogue

GENRES = (28, 12, 16, 35, 80, 99, 18, 10751, 14, 36, 27, 10402, 9648, 10749, 878, 53, 10752, 37)
GENRE_NAMES = {28: "Action", 12: "Adventure", 16: "Animation", 35: "Comedy", 80: "Crime", 99: "Documentary",
               18: "Drama", 10751: "Family", 14: "Fantasy", 36: "History", 27: "Horror", 10402: "Music",
               9648: "Mystery", 10749: "Romance", 878: "Science Fiction", 53: "Thriller", 10752: "War", 37: "Western"}


def synthetic_catalogue(n: int = 600, *, dim: int = 768, clusters: int = 24, seed: int = 0,
                        tv_share: float = 0.2, first_id: int = 100_001) -> Catalogue:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cluster = rng.integers(0, clusters, n)
    noise = rng.normal(size=(n, dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors = centres[cluster] + 0.8 * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cluster_genres = [tuple(int(g) for g in rng.choice(GENRES, size=int(rng.integers(1, 3)), replace=False))
                      for _ in range(clusters)]
    keys, titles, genres = [], [], []
    for i in range(n):
        media = "tv" if rng.random() < tv_share else "movie"
        keys.append(f"{media}-{first_id + i}")
        titles.append(f"Title {first_id + i}")
        own = list(cluster_genres[cluster[i]])
        if rng.random() < 0.3:
            own.append(int(rng.choice(GENRES)))
        genres.append(tuple(dict.fromkeys(own)))
    return Catalogue(
        keys=keys, vectors=vectors, titles=titles, genres=genres,
        years=rng.integers(1960, 2026, n).astype(np.float64),
        vote_average=np.clip(rng.normal(6.4, 1.0, n), 1, 9.8),
        popularity=np.round(rng.lognormal(1.2, 1.0, n), 3),
        runtime=np.where([k.startswith("tv") for k in keys], rng.integers(22, 60, n), rng.integers(80, 170, n)).astype(
            np.float64),
        genre_names=dict(GENRE_NAMES),
    )


def insert_catalogue(conn, catalogue: Catalogue) -> int:
    """Write ``catalogue`` into vectors.content_vectors (tests and the bench; the platform syncs it from
    dim_content and content_embeddings)."""
    import json

    rows = []
    for i, key in enumerate(catalogue.keys):
        media, tmdb = key.split("-", 1)
        metadata = {"popularity": float(catalogue.popularity[i]), "runtime": int(catalogue.runtime[i]),
                    "genre_names": [catalogue.genre_label(g) for g in catalogue.genres[i]]}
        rows.append((key, catalogue.vectors[i], int(tmdb), media, catalogue.titles[i], list(catalogue.genres[i]),
                     int(catalogue.years[i]), float(catalogue.vote_average[i]), json.dumps(metadata), "synthetic",
                     f"h{i}"))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO vectors.content_vectors (id, vector, content_id, media_type, title, genre_ids, year, "
            "vote_average, metadata, embedding_model, content_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows)
    conn.commit()
    return len(rows)
