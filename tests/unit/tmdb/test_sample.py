"""The synthetic catalog: deterministic, varied, valid."""

from __future__ import annotations

import json
from collections import Counter

from gateway_pipelines.lib.tmdb import (
    ALL_GENRE_IDS,
    MOVIE_GENRES,
    TV_GENRES,
    ValidTitle,
    dedupe_latest,
    generate_catalog,
    validate_record,
)

MOVIE_KEYS = {"id", "title", "original_title", "overview", "tagline", "genres", "keywords", "release_date",
              "runtime", "vote_average", "vote_count", "popularity", "original_language", "poster_path",
              "status", "adult"}
TV_KEYS = {"id", "name", "original_name", "overview", "tagline", "genres", "keywords", "first_air_date",
           "episode_run_time", "number_of_seasons", "vote_average", "vote_count", "popularity",
           "original_language", "poster_path", "status"}


def dump(seed: int, n_movies: int = 300, n_tv: int = 100) -> list[str]:
    return [json.dumps(r.record, sort_keys=True) for r in generate_catalog(seed, n_movies, n_tv)]


def test_same_seed_same_bytes_other_seed_differs() -> None:
    assert dump(7) == dump(7)
    assert dump(7) != dump(8)


def test_counts_ids_and_media_types() -> None:
    recs = list(generate_catalog(seed=3, n_movies=120, n_tv=30))
    movies = [r for r in recs if r.media_type == "movie"]
    shows = [r for r in recs if r.media_type == "tv"]
    assert len(movies) == 120 and len(shows) == 30
    assert len({r.record["id"] for r in movies}) == 120 and len({r.record["id"] for r in shows}) == 30
    assert min(r.record["id"] for r in recs) > 100_000  # never a real fixture id


def test_default_catalog_all_fields_present_and_valid() -> None:
    recs = list(generate_catalog())
    assert len(recs) == 2500
    results = [validate_record(r, source="sample", partition="2024-05-01") for r in recs]
    assert all(isinstance(r, ValidTitle) for r in results), [r for r in results if not isinstance(r, ValidTitle)][:3]
    assert len(dedupe_latest(results)) == 2500
    for rec in recs:
        keys = MOVIE_KEYS if rec.media_type == "movie" else TV_KEYS
        assert keys <= rec.record.keys(), keys - rec.record.keys()


def test_genres_and_keywords_fit_media_type() -> None:
    for rec in generate_catalog(seed=11, n_movies=400, n_tv=200):
        table = MOVIE_GENRES if rec.media_type == "movie" else TV_GENRES
        genres = rec.record["genres"]
        assert 1 <= len(genres) <= 3
        assert all(table[g["id"]] == g["name"] for g in genres)
        key = "keywords" if rec.media_type == "movie" else "results"
        assert 3 <= len(rec.record["keywords"][key]) <= 8
    assert len(ALL_GENRE_IDS) == 27 and list(ALL_GENRE_IDS) == sorted(ALL_GENRE_IDS)


def test_varied_and_realistic() -> None:
    recs = list(generate_catalog())
    overviews = [r.record["overview"] for r in recs]
    assert len(set(overviews)) >= 0.9 * len(overviews)
    assert all(2 <= o.count(". ") + 1 <= 4 for o in overviews)  # 2-4 sentences
    languages = Counter(r.record["original_language"] for r in recs)
    assert languages.most_common(1)[0][0] == "en" and len(languages) >= 8
    years = [int((r.record.get("release_date") or r.record["first_air_date"])[:4]) for r in recs]
    assert min(years) >= 1950 and max(years) <= 2025 and max(years) - min(years) > 50
    votes = sorted(r.record["vote_count"] for r in recs)
    assert votes[len(votes) // 2] * 10 < votes[-1]  # skewed: a long tail of popular titles
    assert all(0 <= r.record["vote_average"] <= 10 for r in recs)
    assert {r.record["status"] for r in recs if r.media_type == "tv"} >= {"Returning Series", "Ended"}


def test_semantic_vocabulary_by_genre() -> None:
    recs = list(generate_catalog())
    scifi = " ".join(r.record["overview"].lower() for r in recs
                     if r.media_type == "movie" and r.record["genres"][0]["id"] == 878)
    horror = " ".join(r.record["overview"].lower() for r in recs
                      if r.media_type == "movie" and r.record["genres"][0]["id"] == 27)
    assert "colony" in scifi and " ai " in scifi and "haunted" not in scifi
    assert ("house" in horror or "cult" in horror) and "starship" not in horror


def test_demo_titles_come_first() -> None:
    first = next(iter(generate_catalog(seed=99)))
    assert first.record["title"] == "Vault of Stars"
    text = first.record["overview"].lower()
    assert "vault" in text and "rogue" in text and 878 in [g["id"] for g in first.record["genres"]]
