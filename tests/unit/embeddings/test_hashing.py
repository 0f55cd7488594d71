from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from gateway_pipelines.lib.embeddings import BlockWeights, embedding_hash

MODEL = "openai:text-embedding-3-small@dim512"
W = BlockWeights()


def _row(**kw):
    base = dict(content_key="movie:603", tmdb_id=603, media_type="movie", title="The Matrix",
                original_title="The Matrix", overview="A hacker learns the world is a simulation.",
                tagline="Welcome to the Real World.", genre_ids=[28, 878], keywords=["simulation", "hacker"],
                release_date="1999-03-31", year=1999, runtime=136, vote_average=8.2, vote_count=26000,
                popularity=80.5, original_language="en", poster_path="/x.jpg", status="Released")
    base.update(kw)
    return base


BASE = embedding_hash(_row(), MODEL, W)


def test_is_sha256_hex_and_stable():
    assert len(BASE) == 64 and int(BASE, 16) >= 0
    assert embedding_hash(_row(), MODEL, BlockWeights()) == BASE


@pytest.mark.parametrize("change", [
    dict(title="The Matrix Reloaded"),
    dict(overview="A hacker learns the truth."),
    dict(tagline=None),
    dict(keywords=["simulation"]),
    dict(keywords=["hacker", "simulation"]),  # order is part of the embedded text
    dict(genre_ids=[28]),
    dict(genre_ids=[28, 878, 10765]),
    dict(year=2000),
    dict(runtime=140),
    dict(vote_average=8.3),
    dict(vote_count=26001),
    dict(popularity=81.0),
    dict(media_type="tv"),
    dict(original_language="ja"),
])
def test_changes_with_any_input(change):
    assert embedding_hash(_row(**change), MODEL, W) != BASE


def test_changes_with_model_and_weights():
    assert embedding_hash(_row(), "local:tfidf-lsa@0123456789ab", W) != BASE
    assert embedding_hash(_row(), "openai:text-embedding-3-small@dim256", W) != BASE
    assert embedding_hash(_row(), MODEL, BlockWeights(genre=0.5)) != BASE
    assert embedding_hash(_row(), MODEL, BlockWeights(metadata=0.0)) != BASE


def test_stable_under_irrelevant_differences():
    # fields no block reads
    assert embedding_hash(_row(poster_path="/other.jpg", status="Ended", content_key="x", tmdb_id=1),
                          MODEL, W) == BASE
    # genre order / duplicates do not matter to the genre and mood blocks
    assert embedding_hash(_row(genre_ids=[878, 28, 28]), MODEL, W) == BASE
    # numeric types as they come out of Postgres / pandas
    assert embedding_hash(_row(vote_average=Decimal("8.2"), runtime=136.0, year=1999.0), MODEL, W) == BASE
    # release_date only matters through the year it gives
    assert embedding_hash(_row(release_date=dt.date(1999, 3, 31)), MODEL, W) == BASE
    assert embedding_hash(_row(release_date="1999-04-01"), MODEL, W) == BASE
    assert embedding_hash(_row(year=None, release_date="2001-01-01"), MODEL, W) != BASE
