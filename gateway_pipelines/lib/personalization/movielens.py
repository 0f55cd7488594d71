"""A MovieLens-format dataset (`ratings.csv` + `links.csv`) generated over the catalogue.

There is no network here, and the real MovieLens files could not be used anyway: their `tmdbId`s
are real TMDB ids (862 is Toy Story), while the offline catalogue is the synthetic TMDB sample
(`movie-100001` ...), so every real rating would be "not in the catalogue". This writes files in
exactly the MovieLens layout instead, from simulated users with latent tastes (the simulator's
user model), so that the ingestion, the time split and the evaluation run on MovieLens-shaped data:

* `ratings.csv`: ``userId,movieId,rating,timestamp``; half stars 0.5-5; epoch seconds over the 30
  days to 2018-09-30 (the end of ml-latest-small); each user is active over a window of their own;
* `links.csv`: ``movieId,imdbId,tmdbId``; movieIds are MovieLens-style small integers, not the
  TMDB ids; a few movieIds point at tmdbIds outside the catalogue and a few have no tmdbId, as in
  the real file, and some ratings use them (the ingest counts and reports those).

Which titles a user rates: ∝ popularity^0.6 · exp(1.6·az) (taste), so popularity is a strong but
beatable baseline, as on real rating data. The rating: ``3.5 + 0.6·az + 0.25·(vote_average − 6.4)
+ N(0, 0.7)`` rounded to half stars.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from .catalogue import Catalogue
from .simulator import make_users

# The last 30 days of ml-latest-small's span. Compact on purpose: a run plans (and records) every daily
# partition of its range, about 15 ms each, so twenty years of days would cost minutes per run.
ML_END = datetime(2018, 9, 30, tzinfo=timezone.utc)
ML_START = ML_END - timedelta(days=30)
ORPHAN_TMDB_BASE = 9_000_000  # tmdbIds that are not in the catalogue


@dataclass
class MovieLensData:
    ratings: list[tuple[int, int, float, int]]
    links: list[tuple[int, str, int | None]]
    n_orphan_ratings: int
    n_unlinked_ratings: int


def generate_movielens(catalogue: Catalogue, n_users: int = 300, *, seed: int = 11, mean_ratings: int = 40,
                       orphan_share: float = 0.03) -> MovieLensData:
    rng = np.random.default_rng(seed)
    movies = np.array([i for i, k in enumerate(catalogue.keys) if k.startswith("movie-")], dtype=np.int64)
    if len(movies) < 20:
        raise ValueError(f"the catalogue has {len(movies)} movies; a MovieLens-format dataset needs at least 20")
    users = make_users(catalogue, n_users, rng, prefix="ml-", eligible=movies)
    order = rng.permutation(len(movies))
    movie_id = {int(movies[j]): rank + 1 for rank, j in enumerate(order)}  # catalogue row -> movieId
    links: list[tuple[int, str, int | None]] = []
    for row, mid in sorted(movie_id.items(), key=lambda kv: kv[1]):
        tmdb = int(catalogue.keys[row].split("-", 1)[1])
        links.append((mid, f"{mid * 7919 % 10_000_000:07d}", tmdb))
    n_orphans, n_unlinked = 40, 10
    orphan_ids = [len(movies) + 1 + j for j in range(n_orphans)]
    unlinked_ids = [len(movies) + 1 + n_orphans + j for j in range(n_unlinked)]
    links += [(mid, f"{mid * 7919 % 10_000_000:07d}", ORPHAN_TMDB_BASE + mid) for mid in orphan_ids]
    links += [(mid, f"{mid * 7919 % 10_000_000:07d}", None) for mid in unlinked_ids]

    log_pop = np.log1p(np.maximum(catalogue.popularity[movies], 0))
    base = 0.6 * log_pop
    span = (ML_END - ML_START).total_seconds()
    ratings: list[tuple[int, int, float, int]] = []
    orphan_count = unlinked_count = 0
    for u in range(n_users):
        n = int(min(len(movies) // 2, 10 + rng.poisson(mean_ratings - 10)))
        logits = base + 1.6 * users.affinity_z[u, movies]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        rows = movies[rng.choice(len(movies), size=n, replace=False, p=p)]
        window = min(span, rng.exponential(10 * 86400) + 2 * 86400)
        t0 = ML_START.timestamp() + rng.random() * (span - window)
        times = np.sort(t0 + rng.random(n) * window).astype(np.int64)
        for row, t in zip(rows.tolist(), times.tolist()):
            stars = 3.5 + 0.6 * users.affinity_z[u, row] + 0.25 * (catalogue.vote_average[row] - 6.4) + rng.normal(0, 0.7)
            ratings.append((u + 1, movie_id[row], float(np.clip(round(stars * 2) / 2, 0.5, 5.0)), int(t)))
            if rng.random() < orphan_share:
                orphan = bool(rng.random() < 0.75)
                mid = int(rng.choice(orphan_ids if orphan else unlinked_ids))
                ratings.append((u + 1, mid, float(rng.choice([2.5, 3.0, 3.5, 4.0])), int(t) + 60))
                orphan_count += orphan
                unlinked_count += not orphan
    ratings.sort(key=lambda r: (r[0], r[3], r[1]))
    return MovieLensData(ratings, links, orphan_count, unlinked_count)


def write_movielens(data: MovieLensData, folder: Path, prefix: str = "") -> tuple[Path, Path]:
    """`<prefix>ratings.csv` and `<prefix>links.csv` in ``folder``; links first, so a watcher that sees
    the ratings file also finds its links."""
    folder.mkdir(parents=True, exist_ok=True)
    links_path = folder / f"{prefix}links.csv"
    ratings_path = folder / f"{prefix}ratings.csv"
    with links_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["movieId", "imdbId", "tmdbId"])
        for mid, imdb, tmdb in data.links:
            writer.writerow([mid, imdb, "" if tmdb is None else tmdb])
    tmp = ratings_path.with_suffix(".csv.part")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        for user, movie, rating, ts in data.ratings:
            writer.writerow([user, movie, f"{rating:.1f}", ts])
    tmp.replace(ratings_path)
    return ratings_path, links_path
