"""The batch block builders (the vectorised path of `build_content_vectors`) give exactly the vectors
the per-row formulas gave: digests pinned from the release before the batch path, and batch against
per-row where both still exist."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest

from gateway_pipelines.lib.embeddings import BlockWeights, embedding_hash, genre_block, metadata_block, mood_text
from gateway_pipelines.lib.embeddings.genre_features import genre_blocks
from gateway_pipelines.lib.embeddings.metadata_features import metadata_blocks
from gateway_pipelines.lib.embeddings.mood_features import mood_block, mood_blocks
from tests.unit.embeddings import plots


def golden_rows() -> list[dict]:
    """Rows through every branch of the blocks: the plots corpus, TV aliases, years and phrases in the
    text, accents, JSON / Postgres-array fields, missing and zero values."""
    rows = []
    for i, (subject, texts) in enumerate(plots.PLOTS.items()):
        for j, t in enumerate(texts):
            rows.append({"content_key": f"movie-{i}-{j}", "media_type": "movie" if j % 3 else "tv",
                         "title": f"{subject.title()} {j}", "overview": t,
                         "tagline": "Run for your life!" if j % 4 == 0 else None,
                         "genre_ids": [[878, 12], [10749, 18], [80, 53], [10765], [27, 9648], [35, 10751]][(i + j) % 6],
                         "keywords": ["kung fu", "heist", "1920s"] if j % 5 == 0 else [],
                         "release_date": dt.date(1900 + 7 * j + i, 1 + j % 12, 1) if j % 7 else None,
                         "year": None if j % 7 else 1850 + 20 * i, "runtime": 0 if j == 3 else 80 + 7 * j,
                         "vote_average": 0.0 if j == 2 else 4.5 + 0.37 * j,
                         "vote_count": [0, 3, 49, 50, 5000, None][j % 6],
                         "popularity": None if j == 4 else 0.5 * (j + 1) ** 2.5,
                         "original_language": ["en", "fr", "cn", "xx", "qq", None][(i + j) % 6]})
    rows.append({"content_key": "edge-accents", "title": "Amélie à Paris",
                 "overview": "Une héroïne naïve fête Noël in 2149 and the 1920s; café crème, on the run.",
                 "genre_ids": "{10759,10768}", "keywords": '["zombie apocalypse", "post-apocalyptic"]', "year": 2149,
                 "media_type": "TV"})
    rows.append({"content_key": "edge-empty"})
    return rows


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()


# Computed with the per-row implementation of the release before the batch path (git HEAD f78d2fe).
# Genre and mood blocks are exact arithmetic (no libm call), so the digests hold on any machine.
GOLDEN_GENRE = "1b86a0a5d5df7e2fb1aab501cf9c87519d9db47c219ae1cbcb21ffe1e74f802f"
GOLDEN_MOOD = "0038dddca1b73f7a37924caf0965eff8ae610f1b36856190ca7d5c6038a9b29d"
GOLDEN_HASHES = "216d2b6f3c5ac84a91f368b858e75ccad6567e467a816954231f78f79dcdf5a4"


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return golden_rows()


def test_genre_and_mood_batches_equal_the_previous_per_row_vectors_bit_for_bit(rows):
    ids = [r.get("genre_ids") for r in rows]
    assert _digest(genre_blocks(ids)) == GOLDEN_GENRE
    assert _digest(mood_blocks(ids, [mood_text(r) for r in rows])) == GOLDEN_MOOD
    assert _digest(np.stack([genre_block(g) for g in ids])) == GOLDEN_GENRE


def test_embedding_hashes_are_unchanged_so_no_stored_vector_is_re_embedded(rows):
    hashes = [embedding_hash(r, "local:tfidf-lsa@x", BlockWeights()) for r in rows]
    assert hashlib.sha256("".join(hashes).encode()).hexdigest() == GOLDEN_HASHES


def test_metadata_batch_equals_the_per_row_block_bit_for_bit(rows):
    batch = metadata_blocks(rows)
    single = np.stack([metadata_block(r) for r in rows])
    assert batch.dtype == np.float32 and batch.shape == (len(rows), 128)
    np.testing.assert_array_equal(batch, single)
    assert batch[:, :97].any(axis=1)[:-1].all() and not batch[-1].any()  # the empty row stays zero


def test_a_batch_scores_each_row_on_its_own(rows):
    """Order and neighbours in the batch do not leak: any row alone equals its row in the batch."""
    ids, texts = [r.get("genre_ids") for r in rows], [mood_text(r) for r in rows]
    batch = mood_blocks(ids, texts)
    rng = np.random.default_rng(3)
    order = rng.permutation(len(rows))
    np.testing.assert_array_equal(mood_blocks([ids[i] for i in order], [texts[i] for i in order]), batch[order])
    for i in (0, 17, len(rows) - 2, len(rows) - 1):
        np.testing.assert_array_equal(mood_block(ids[i], texts[i]), batch[i])
    np.testing.assert_array_equal(metadata_blocks([rows[5]])[0], metadata_block(rows[5]))


def test_phrases_years_and_repeats_count_like_the_scalar_rule():
    # "on the run" twice (2 hits -> 0.75), a year of the 1920s -> early_20th era slot lit
    m = mood_block([], "On the run, always on the run since 1925.")
    from gateway_pipelines.lib.embeddings.mood_features import mood_slot

    assert m[mood_slot("energy.chase")] == pytest.approx(0.75)
    assert m[mood_slot("era.early_20th")] == pytest.approx(0.5)
    assert mood_blocks([], []).shape == (0, 64)
    with pytest.raises(ValueError, match="genre lists"):
        mood_blocks([[1]], [])
